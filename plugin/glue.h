#ifndef MSGRAPH_GLUE_H
#define MSGRAPH_GLUE_H
#include <stdint.h>

/* Whether Fluent Bit (4.1 and later) passes a per-instance context to the
 * collect and cleanup callbacks. */
int msgraph_has_ctx_callbacks(void *plugin);

/* Stores the instance handle where Fluent Bit hands it back to the
 * callbacks. Only valid when msgraph_has_ctx_callbacks is true. */
void msgraph_set_remote_context(void *plugin, uintptr_t handle);

/* Fluent Bit's API and input instance of the plugin being initialised,
 * kept for logging through Fluent Bit's logger. */
void *msgraph_api(void *plugin);
void *msgraph_instance(void *plugin);

/* Logs msg through Fluent Bit's logger at level (1 error .. 4 debug),
 * honouring the input's log_level. Returns 0 when the API has no logger. */
int msgraph_log(void *api, void *ins, int level, const char *msg);

#endif
