package embednats

// Header names drplane sets on the messages it puts in its streams. A dead
// letter in DLQ_<dc> carries the poison message's body unchanged and, in
// headers, why and where it failed; a message put back into IN_<dc> (a
// retried dead letter) names what it copies.
const (
	// HeaderError is why the collector could not apply the message.
	HeaderError = "Drplane-Error"
	// HeaderOrigin is the DC the message came from.
	HeaderOrigin = "Drplane-Origin"
	// HeaderRequestID is the request's id ("<gtid>/<shard>").
	HeaderRequestID = "Drplane-Request-Id"
	// HeaderSubject is the subject the message had in the inbound stream.
	HeaderSubject = "Drplane-Subject"
	// HeaderStream and HeaderSequence name the stream and sequence the
	// message was read from.
	HeaderStream   = "Drplane-Stream"
	HeaderSequence = "Drplane-Stream-Seq"
	// HeaderDuplicate marks a copy made by the collector's duplicate-delivery
	// test hook.
	HeaderDuplicate = "Drplane-Duplicate"
	// HeaderRetryOfDLQ is the DLQ_<dc> sequence a retried dead letter was
	// copied from.
	HeaderRetryOfDLQ = "Drplane-Retry-Of-Dlq"
)
