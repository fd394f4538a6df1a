package es_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path"
	"slices"
	"sync"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/docstore"
	"github.com/drplane/drplane/pkg/docstore/es"
	"github.com/drplane/drplane/pkg/docstore/storetest"
)

// recorded are the contract cases with a recording in testdata. Bulk500
// and ConcurrentWriters run only against a real Elasticsearch.
var recorded = []string{
	storetest.CaseEnsureIndex, storetest.CaseGetMissing, storetest.CaseMerge,
	storetest.CaseRejected, storetest.CaseQuery,
}

// TestContractRecorded runs the contract suite against recorded
// Elasticsearch answers, asserting every request the backend sends.
func TestContractRecorded(t *testing.T) {
	storetest.Run(t, func(t *testing.T) docstore.Store {
		name := path.Base(t.Name())
		if !slices.Contains(recorded, name) {
			t.Skipf("no recording of %s; it runs against a real Elasticsearch when DRPLANE_TEST_ES_URL is set", name)
		}
		srv := replay(t, loadCassette(t, cassettePath(name)))
		s, err := es.New(es.Options{Addresses: []string{srv.URL}, Logger: zerolog.Nop()})
		require.NoError(t, err)
		return s
	})
}

// TestContractLive runs the whole contract suite against the Elasticsearch
// 8 cluster at DRPLANE_TEST_ES_URL (credentials may be given in the URL).
// Its indexes get a random prefix and are deleted afterwards.
func TestContractLive(t *testing.T) {
	addr := os.Getenv("DRPLANE_TEST_ES_URL")
	if addr == "" {
		t.Skip("DRPLANE_TEST_ES_URL is not set; set it to an Elasticsearch 8 URL to run the contract suite against a real cluster")
	}
	admin, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{addr}})
	require.NoError(t, err)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "drplane-test-" + hex.EncodeToString(b) + "-"
	storetest.Run(t, func(t *testing.T) docstore.Store {
		s, err := es.New(es.Options{Addresses: []string{addr}, Logger: zerolog.Nop()})
		require.NoError(t, err)
		p := &prefixed{Store: s, prefix: prefix}
		t.Cleanup(func() {
			for _, idx := range p.used() {
				res, err := admin.Indices.Delete([]string{idx}, admin.Indices.Delete.WithIgnoreUnavailable(true))
				if assert.NoError(t, err) {
					_ = res.Body.Close()
				}
				res, err = admin.Indices.DeleteIndexTemplate("docstore-" + idx)
				if assert.NoError(t, err) {
					_ = res.Body.Close()
				}
			}
		})
		return p
	})
}

// prefixed isolates a test run's indexes on a shared cluster.
type prefixed struct {
	docstore.Store
	prefix string

	mu    sync.Mutex
	names map[string]bool
}

func (p *prefixed) name(index string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.names == nil {
		p.names = map[string]bool{}
	}
	p.names[p.prefix+index] = true
	return p.prefix + index
}

func (p *prefixed) used() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for n := range p.names {
		if docstore.ValidateIndexName(n) == nil {
			out = append(out, n)
		}
	}
	return out
}

func (p *prefixed) EnsureIndex(ctx context.Context, index string, m docstore.Mapping) error {
	return p.Store.EnsureIndex(ctx, p.name(index), m)
}

func (p *prefixed) Bulk(ctx context.Context, index string, ops []docstore.Op) (docstore.BulkResult, error) {
	return p.Store.Bulk(ctx, p.name(index), ops)
}

func (p *prefixed) Get(ctx context.Context, index, id string) (json.RawMessage, error) {
	return p.Store.Get(ctx, p.name(index), id)
}

func (p *prefixed) Search(ctx context.Context, index string, q docstore.Query) (docstore.Result, error) {
	return p.Store.Search(ctx, p.name(index), q)
}

func (p *prefixed) Refresh(ctx context.Context, index string) error {
	return p.Store.Refresh(ctx, p.name(index))
}
