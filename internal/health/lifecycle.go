package health

// Codes of conditions met between the plugin and Fluent Bit rather than
// with Graph.
const (
	// IngestRefused: Fluent Bit did not accept a batch (the input's ring
	// buffer stayed full); the batch is offered again, nothing is lost.
	IngestRefused Code = "ingest_refused"
	// InternalError: a bug inside the plugin was caught; the message says
	// what it cost.
	InternalError Code = "internal_error"
)
