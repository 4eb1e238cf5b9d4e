#include "check.h"
TEST(placeholder_http1) { CHECK(1); }
CHECK_MAIN()
