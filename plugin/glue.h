#ifndef MSGRAPH_GLUE_H
#define MSGRAPH_GLUE_H
#include <stddef.h>
#include <stdint.h>

/* Whether Fluent Bit (4.1 and later) passes a per-instance context to the
 * collect and cleanup callbacks. */
int msgraph_has_ctx_callbacks(void *plugin);

/* Stores the instance handle where Fluent Bit hands it back to the
 * callbacks. Only valid when msgraph_has_ctx_callbacks is true. */
void msgraph_set_remote_context(void *plugin, uintptr_t handle);

/* Fluent Bit's API and input instance of the plugin being initialised,
 * kept for logging through Fluent Bit's logger and for appending. */
void *msgraph_api(void *plugin);
void *msgraph_instance(void *plugin);

/* Logs msg through Fluent Bit's logger at level (1 error .. 4 debug),
 * honouring the input's log_level. Returns 0 when the API has no logger. */
int msgraph_log(void *api, void *ins, int level, const char *msg);

/* The calling thread. Fluent Bit runs each input's callbacks on a thread
 * of its own, so this tells instances apart in the callbacks that carry
 * no instance (pause, resume, exit). */
uint64_t msgraph_thread(void);

/* Whether Fluent Bit exports flb_input_log_append, so that the plugin can
 * append a batch itself and learn whether Fluent Bit accepted it. */
int msgraph_can_append(void);

/* Appends a batch of msgpack records to the input instance ins, as Fluent
 * Bit's Go proxy does after the collect callback, and returns what
 * flb_input_log_append returns: 0 accepted, -1 not (for a threaded input:
 * its ring buffer stayed full). Only valid when msgraph_can_append is true. */
int msgraph_append(void *ins, const void *buf, size_t size);

/* Fluent Bit's name for the input instance ins: its alias, or msgraph.N
 * (flb_input_name). NULL when Fluent Bit does not export it. */
const char *msgraph_input_name(void *ins);

/* Whether Fluent Bit exports the functions added in 4.0.3. */
int msgraph_since_403(void);

/* Ends the process at once with status (_exit): no atexit handler and no
 * other thread runs on. */
void msgraph_exit(int status);

#endif
