// libjpeg-turbo's TurboJPEG API (tjDecompress2 and friends), which returns errors instead of
// calling exit() or longjmp (Debian: libturbojpeg0-dev, found through pkg-config `libturbojpeg`).
#include <turbojpeg.h>
