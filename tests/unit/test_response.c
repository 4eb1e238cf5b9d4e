#include "check.h"
TEST(placeholder_response) { CHECK(1); }
CHECK_MAIN()
