package docstore_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/drplane/drplane/pkg/docstore"
)

func TestNormalize(t *testing.T) {
	q, err := docstore.Query{}.Normalize()
	require.NoError(t, err)
	require.Equal(t, docstore.DefaultSize, q.Size)

	one := int64(1)
	for name, bad := range map[string]docstore.Query{
		"negative size":      {Size: -1},
		"size over max":      {Size: docstore.MaxSize + 1},
		"window w/o field":   {From: time.Now()},
		"empty terms":        {Terms: map[string][]string{"a": nil}},
		"mixed range bounds": {Ranges: []docstore.Range{{Field: "n", Min: &one, To: time.Now()}}},
		"reserved sort":      {Sort: docstore.ReservedIDField},
		"metadata sort":      {Sort: "_id"},
	} {
		_, err := bad.Normalize()
		require.ErrorIs(t, err, docstore.ErrBadQuery, name)
		var qe *docstore.QueryError
		require.True(t, errors.As(err, &qe), name)
		require.True(t, strings.HasPrefix(err.Error(), "docstore: bad query: "), name)
	}
}

func TestValidateIndexName(t *testing.T) {
	for _, ok := range []string{"audit", "drplane-ledger-2025.03", "a_b+c"} {
		require.NoError(t, docstore.ValidateIndexName(ok), ok)
	}
	for _, bad := range []string{"", ".", "..", "Audit", "_x", "-x", "+x", ".hidden", "a/b", "a b", "a*", "a:b", strings.Repeat("a", 256)} {
		require.ErrorIs(t, docstore.ValidateIndexName(bad), docstore.ErrInvalid, bad)
	}
}

func TestMappingValidate(t *testing.T) {
	require.NoError(t, docstore.Mapping{"a": docstore.Keyword, "b.c": docstore.Date}.Validate())
	for name, bad := range map[string]docstore.Mapping{
		"empty":         {},
		"unknown type":  {"a": "float"},
		"leaf and obj":  {"a": docstore.Keyword, "a.b": docstore.Long},
		"reserved":      {docstore.ReservedIDField: docstore.Keyword},
		"underscore":    {"_source": docstore.Keyword},
		"empty part":    {"a..b": docstore.Keyword},
		"colon in name": {"a:b": docstore.Keyword},
		"trailing dot":  {"a.": docstore.Keyword},
	} {
		require.ErrorIs(t, bad.Validate(), docstore.ErrInvalid, name)
	}
}

func TestBulkResult(t *testing.T) {
	r := docstore.BulkResult{Items: []docstore.BulkItem{{ID: "a"}, {ID: "b", Err: docstore.ErrRejected}}}
	require.Len(t, r.Failed(), 1)
	require.ErrorIs(t, r.Err(), docstore.ErrRejected)
	require.NoError(t, docstore.BulkResult{Items: []docstore.BulkItem{{ID: "a"}}}.Err())
}
