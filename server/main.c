/* evicorn: an ASGI-style HTTP/1.1 server whose routes are hot-loaded
 * plugins. The binary embeds nothing: run.c is the server. */
#include "embedding.h"

int main(int argc, char **argv)
{
    return evicorn_run(argc, argv, NULL);
}
