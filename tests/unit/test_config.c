#include "check.h"
TEST(placeholder_config) { CHECK(1); }
CHECK_MAIN()
