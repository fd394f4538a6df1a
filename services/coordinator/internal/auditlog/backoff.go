package auditlog

import "github.com/drplane/drplane/pkg/retry"

func (ix *Indexer) backoff() *retry.Backoff { return retry.New(ix.o.MinBackoff, ix.o.MaxBackoff) }
