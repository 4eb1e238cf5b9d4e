/* dispatch: routes a request to its handler. With no routes loaded every
 * path is FastAPI's 404. */
#include "dispatch.h"

#include "request.h"

int dispatch_init(struct worker *w)
{
    (void)w;
    return 0;
}

void dispatch_request(struct request *r)
{
    request_respond_error(r, 404, "Not Found");
    request_finish(r, NULL);
}

void dispatch_shutdown(struct worker *w)
{
    (void)w;
}
