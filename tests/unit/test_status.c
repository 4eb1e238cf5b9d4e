/* The status reasons on both sides of the ABI: the server's status lines
 * (server/http.c) and the SDK's default error details (sdk/src/respond.c)
 * come from one list (abi/evicorn/status.h) and must never disagree. */
#include <evicorn/sdk.h>

#include "check.h"
#include "http.h"

TEST(server_and_sdk_agree_on_every_status)
{
    for (int status = 0; status < 1000; status++)
        if (strcmp(http_reason(status), evicorn_status_reason(status)) != 0) {
            fprintf(stderr, "  status %d: server \"%s\", sdk \"%s\"\n", status, http_reason(status),
                    evicorn_status_reason(status));
            check_failed_now = 1;
        }
}

TEST(sdk_uses_rfc_9110_names)
{
    CHECK_EQ_STR(evicorn_status_reason(413), "Content Too Large");
    CHECK_EQ_STR(evicorn_status_reason(414), "URI Too Long");
    CHECK_EQ_STR(evicorn_status_reason(416), "Range Not Satisfiable");
    CHECK_EQ_STR(evicorn_status_reason(422), "Unprocessable Content");
    CHECK_EQ_STR(evicorn_status_reason(599), "Unknown");
}

CHECK_MAIN()
