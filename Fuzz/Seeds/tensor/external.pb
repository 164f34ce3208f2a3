Bej
locationmissing.binp