package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// ExitInvalid is the process exit code for invalid configuration.
const ExitInvalid = 2

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("config: invalid")

// Secret is a string that never prints: String, YAML and JSON show
// "[redacted]" (or nothing when empty). Use Reveal to get the value.
type Secret string

const redacted = "[redacted]"

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// SHA256 returns the hex SHA-256 of the value: the form in which a secret
// such as an API token is stored in configuration.
func (s Secret) SHA256() string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// MarshalYAML redacts the value.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON redacts the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// MarshalText redacts the value (used by loggers that format text).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Error is a configuration error naming the offending field by its YAML path.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "config: " + e.Msg
	}
	return "config: " + e.Field + ": " + e.Msg
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

// Invalid returns an *Error for field.
func Invalid(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Validator is implemented by configuration structs.
type Validator interface {
	Validate() error
}

// Source says where configuration comes from.
type Source struct {
	// File is a YAML file; empty means none. Unknown keys are errors.
	File string
	// EnvPrefix names environment variables: PREFIX_SECTION_KEY, from the
	// YAML key path upper-cased ("etcd.endpoints" → DRPLANE_ETCD_ENDPOINTS).
	EnvPrefix string
	// LookupEnv defaults to os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Flags, already parsed, whose set values are bound to fields of the
	// configuration; flags that were set on the command line win over file
	// and environment.
	Flags *pflag.FlagSet
}

// Load fills cfg, a pointer to a struct already holding its defaults, from
// the file, then the environment, then the flags that were set, and
// validates it when it implements Validator.
func Load(cfg any, src Source) error {
	set := map[string]string{}
	if src.Flags != nil {
		src.Flags.Visit(func(f *pflag.Flag) {
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				set[f.Name] = strings.Join(sv.GetSlice(), ",")
				return
			}
			set[f.Name] = f.Value.String()
		})
	}
	if src.File != "" {
		data, err := os.ReadFile(src.File)
		if err != nil {
			return &Error{Field: "", Msg: fmt.Sprintf("read %s: %v", src.File, err)}
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return &Error{Msg: fmt.Sprintf("%s: %v", src.File, err)}
		}
	}
	if src.EnvPrefix != "" {
		lookup := src.LookupEnv
		if lookup == nil {
			lookup = os.LookupEnv
		}
		if err := applyEnv(reflect.ValueOf(cfg).Elem(), src.EnvPrefix, "", lookup); err != nil {
			return err
		}
	}
	if src.Flags != nil {
		for name, v := range set {
			f := src.Flags.Lookup(name)
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				if err := sv.Replace(splitList(v)); err != nil {
					return Invalid("--"+name, "%v", err)
				}
				continue
			}
			if err := f.Value.Set(v); err != nil {
				return Invalid("--"+name, "%v", err)
			}
		}
	}
	if v, ok := cfg.(Validator); ok {
		return v.Validate()
	}
	return nil
}

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	parts := strings.Split(v, ",")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var durationType = reflect.TypeOf(time.Duration(0))

func applyEnv(v reflect.Value, prefix, path string, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		fv := v.Field(i)
		if strings.Contains(opts, "inline") {
			if err := applyEnv(fv, prefix, path, lookup); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		field := name
		if path != "" {
			field = path + "." + name
		}
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			if err := applyEnv(fv, prefix, field, lookup); err != nil {
				return err
			}
			continue
		}
		key := prefix + "_" + strings.ToUpper(strings.ReplaceAll(field, ".", "_"))
		raw, ok := lookup(key)
		if !ok {
			continue
		}
		if err := setScalar(fv, raw); err != nil {
			return Invalid(field, "from $%s: %v", key, err)
		}
	}
	return nil
}

func setScalar(fv reflect.Value, raw string) error {
	if fv.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return err
		}
		fv.SetFloat(f)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported list type %s", fv.Type())
		}
		parts := splitList(raw)
		s := reflect.MakeSlice(fv.Type(), len(parts), len(parts))
		for i, p := range parts {
			s.Index(i).SetString(p)
		}
		fv.Set(s)
	default:
		return fmt.Errorf("unsupported type %s", fv.Type())
	}
	return nil
}

// Dump renders cfg as YAML with every Secret redacted.
func Dump(cfg any) string {
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Sprintf("# cannot render config: %v\n", err)
	}
	return string(out)
}
