#include "check.h"
TEST(placeholder_guard) { CHECK(1); }
CHECK_MAIN()
