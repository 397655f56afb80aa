#ifndef MSGRAPH_GLUE_H
#define MSGRAPH_GLUE_H
#include <stdint.h>

/* Whether Fluent Bit (4.1 and later) passes a per-instance context to the
 * collect and cleanup callbacks. */
int msgraph_has_ctx_callbacks(void *plugin);

/* Stores the instance handle where Fluent Bit hands it back to the
 * callbacks. Only valid when msgraph_has_ctx_callbacks is true. */
void msgraph_set_remote_context(void *plugin, uintptr_t handle);

#endif
