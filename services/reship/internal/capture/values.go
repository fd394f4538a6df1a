package capture

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	drplanev1 "github.com/drplane/drplane/proto/drplane/v1"
)

// binaryCollation is the collation id of binary strings (BINARY, VARBINARY,
// BLOB): their values travel as raw bytes.
const binaryCollation = 63

// tableMeta is what converting one table's rows needs, taken from its table
// map event.
type tableMeta struct {
	schema, table string
	names         []string
	// pk are the primary key's column indexes; empty when the table has none.
	pk     []int
	binary map[int]bool
	bit    map[int]bool
	enums  map[int][]string
	sets   map[int][]string
}

// newTableMeta reads a table map event. It fails with ErrNoColumnNames when
// the event carries no column names (binlog_row_metadata is not FULL).
func newTableMeta(tm *replication.TableMapEvent) (*tableMeta, error) {
	m := &tableMeta{schema: string(tm.Schema), table: string(tm.Table)}
	m.names = tm.ColumnNameString()
	if len(m.names) != int(tm.ColumnCount) {
		return nil, fmt.Errorf("%w: table %s.%s", ErrNoColumnNames, m.schema, m.table)
	}
	for _, i := range tm.PrimaryKey {
		m.pk = append(m.pk, int(i))
	}
	for i, coll := range tm.CollationMap() {
		if coll == binaryCollation {
			if m.binary == nil {
				m.binary = map[int]bool{}
			}
			m.binary[i] = true
		}
	}
	for i, t := range tm.ColumnType {
		if t == mysql.MYSQL_TYPE_BIT {
			if m.bit == nil {
				m.bit = map[int]bool{}
			}
			m.bit[i] = true
		}
	}
	m.enums = tm.EnumStrValueMap()
	m.sets = tm.SetStrValueMap()
	return m, nil
}

// columns converts one row image; skipped are the indexes of columns the
// image does not carry (a minimal row image).
func (m *tableMeta) columns(row []any, skipped []int) []*drplanev1.Column {
	out := make([]*drplanev1.Column, 0, len(row))
	s := 0
	for i, v := range row {
		if s < len(skipped) && skipped[s] == i {
			s++
			continue
		}
		out = append(out, &drplanev1.Column{Name: m.names[i], Value: m.value(i, v)})
	}
	return out
}

// key returns the primary key columns of a converted image, or the whole
// image when the table has no primary key or the image lacks a key column.
func (m *tableMeta) key(image []*drplanev1.Column) []*drplanev1.Column {
	if len(m.pk) == 0 {
		return image
	}
	out := make([]*drplanev1.Column, 0, len(m.pk))
	for _, i := range m.pk {
		name := m.names[i]
		found := false
		for _, c := range image {
			if c.Name == name {
				out = append(out, c)
				found = true
				break
			}
		}
		if !found {
			return image
		}
	}
	return out
}

// value converts the decoded value of column i.
func (m *tableMeta) value(i int, v any) *drplanev1.Value {
	switch x := v.(type) {
	case nil:
		return &drplanev1.Value{Kind: &drplanev1.Value_Null{Null: true}}
	case int8:
		return intValue(int64(x))
	case int16:
		return intValue(int64(x))
	case int32:
		return intValue(int64(x))
	case int:
		return intValue(int64(x))
	case int64:
		switch {
		case m.enums[i] != nil:
			return textValue(enumName(m.enums[i], x))
		case m.sets[i] != nil:
			return textValue(setNames(m.sets[i], uint64(x)))
		case m.bit[i]:
			return uintValue(uint64(x))
		}
		return intValue(x)
	case uint8:
		return uintValue(uint64(x))
	case uint16:
		return uintValue(uint64(x))
	case uint32:
		return uintValue(uint64(x))
	case uint64:
		return uintValue(x)
	case float32:
		// Through its shortest decimal form, so 0.1 stays 0.1 and not
		// 0.10000000149011612.
		f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
		return &drplanev1.Value{Kind: &drplanev1.Value_Float{Float: f}}
	case float64:
		return &drplanev1.Value{Kind: &drplanev1.Value_Float{Float: x}}
	case string:
		if m.binary[i] || !utf8.ValidString(x) {
			return &drplanev1.Value{Kind: &drplanev1.Value_Raw{Raw: []byte(x)}}
		}
		return textValue(x)
	case []byte:
		if m.binary[i] || !utf8.Valid(x) {
			return &drplanev1.Value{Kind: &drplanev1.Value_Raw{Raw: append([]byte(nil), x...)}}
		}
		return textValue(string(x))
	case time.Time:
		return textValue(x.UTC().Format("2006-01-02 15:04:05.999999"))
	case fmt.Stringer:
		return textValue(x.String())
	}
	return textValue(fmt.Sprint(v))
}

func intValue(v int64) *drplanev1.Value {
	return &drplanev1.Value{Kind: &drplanev1.Value_Int{Int: v}}
}

func uintValue(v uint64) *drplanev1.Value {
	return &drplanev1.Value{Kind: &drplanev1.Value_Uint{Uint: v}}
}

func textValue(v string) *drplanev1.Value {
	return &drplanev1.Value{Kind: &drplanev1.Value_Text{Text: v}}
}

// enumName is the member with 1-based index n; 0 (the error value of an
// ENUM) is the empty string.
func enumName(members []string, n int64) string {
	if n < 1 || int(n) > len(members) {
		return ""
	}
	return members[n-1]
}

// setNames joins the members whose bits are set, in definition order.
func setNames(members []string, mask uint64) string {
	names := make([]string, 0, bits.OnesCount64(mask))
	for i, name := range members {
		if i < 64 && mask&(1<<uint(i)) != 0 {
			names = append(names, name)
		}
	}
	return strings.Join(names, ",")
}
