package capture

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

func TestValue(t *testing.T) {
	m := &tableMeta{
		names:  []string{"i", "b", "e", "s", "bits", "v"},
		binary: map[int]bool{1: true},
		bit:    map[int]bool{4: true},
		enums:  map[int][]string{2: {"new", "paid", "shipped"}},
		sets:   map[int][]string{3: {"red", "green", "blue"}},
	}
	text := func(s string) *drplanev1.Value { return &drplanev1.Value{Kind: &drplanev1.Value_Text{Text: s}} }
	for _, tc := range []struct {
		name string
		col  int
		in   any
		want *drplanev1.Value
	}{
		{"null", 0, nil, &drplanev1.Value{Kind: &drplanev1.Value_Null{Null: true}}},
		{"int8", 0, int8(-3), &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: -3}}},
		{"int64", 0, int64(-1 << 62), &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: -1 << 62}}},
		{"uint64", 0, uint64(1<<64 - 1), &drplanev1.Value{Kind: &drplanev1.Value_Uint{Uint: 1<<64 - 1}}},
		{"uint8", 0, uint8(200), &drplanev1.Value{Kind: &drplanev1.Value_Uint{Uint: 200}}},
		{"float32 keeps its decimal", 0, float32(0.1), &drplanev1.Value{Kind: &drplanev1.Value_Float{Float: 0.1}}},
		{"double", 0, 2.5, &drplanev1.Value{Kind: &drplanev1.Value_Float{Float: 2.5}}},
		{"decimal text", 0, "12.50", text("12.50")},
		{"varchar", 5, "héllo", text("héllo")},
		{"text column as bytes", 5, []byte("long text"), text("long text")},
		{"invalid utf-8 goes raw", 5, "\xff\xfe", &drplanev1.Value{Kind: &drplanev1.Value_Raw{Raw: []byte("\xff\xfe")}}},
		{"varbinary", 1, "ab\x00", &drplanev1.Value{Kind: &drplanev1.Value_Raw{Raw: []byte("ab\x00")}}},
		{"blob", 1, []byte{1, 2}, &drplanev1.Value{Kind: &drplanev1.Value_Raw{Raw: []byte{1, 2}}}},
		{"enum", 2, int64(2), text("paid")},
		{"enum error value", 2, int64(0), text("")},
		{"set", 3, int64(5), text("red,blue")},
		{"empty set", 3, int64(0), text("")},
		{"bit", 4, int64(-1), &drplanev1.Value{Kind: &drplanev1.Value_Uint{Uint: 1<<64 - 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := m.value(tc.col, tc.in)
			require.True(t, proto.Equal(tc.want, got), "got %v, want %v", got, tc.want)
		})
	}
}

func TestColumnsAndKey(t *testing.T) {
	m := &tableMeta{names: []string{"id", "user_id", "note"}, pk: []int{0}}
	img := m.columns([]any{int64(7), int64(42), "x"}, nil)
	require.Len(t, img, 3)
	require.Equal(t, []string{"id"}, names(m.key(img)))
	// A minimal image without the note column.
	img = m.columns([]any{int64(7), int64(42), nil}, []int{2})
	require.Equal(t, []string{"id", "user_id"}, names(img))
	// No primary key: the whole image identifies the row.
	noPK := &tableMeta{names: []string{"a", "b"}}
	img = noPK.columns([]any{int64(1), int64(2)}, nil)
	require.Equal(t, []string{"a", "b"}, names(noPK.key(img)))
	// An image lacking a key column falls back to the whole image.
	m2 := &tableMeta{names: []string{"id", "v"}, pk: []int{0}}
	img = m2.columns([]any{nil, int64(1)}, []int{0})
	require.Equal(t, []string{"v"}, names(m2.key(img)))
}

func names(cols []*drplanev1.Column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.Name
	}
	return out
}
