// libpng's simplified read API (png_image_*), which reports errors through png_image.message
// instead of longjmp (Debian: libpng-dev, found through pkg-config `libpng`).
#include <png.h>
