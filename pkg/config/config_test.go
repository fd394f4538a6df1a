package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type etcdConf struct {
	Endpoints []string      `yaml:"endpoints"`
	Timeout   time.Duration `yaml:"timeout"`
	Password  Secret        `yaml:"password"`
}

type Base struct {
	DC string `yaml:"dc"`
}

type testConf struct {
	Base  `yaml:",inline"`
	Etcd  etcdConf `yaml:"etcd"`
	Level string   `yaml:"level"`
	Port  int      `yaml:"port"`
}

func (c *testConf) Validate() error {
	if len(c.Etcd.Endpoints) == 0 {
		return Invalid("etcd.endpoints", "at least one endpoint is required")
	}
	return nil
}

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPrecedence(t *testing.T) {
	cfg := &testConf{Level: "info", Port: 1}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.StringVar(&cfg.Level, "level", cfg.Level, "")
	fs.StringSliceVar(&cfg.Etcd.Endpoints, "etcd", nil, "")
	if err := fs.Parse([]string{"--level=debug", "--etcd=http://f1,http://f2"}); err != nil {
		t.Fatal(err)
	}
	file := write(t, "dc: dc-a1\nlevel: warn\nport: 7\netcd:\n  endpoints: [http://file]\n  timeout: 3s\n  password: hunter2\n")
	err := Load(cfg, Source{File: file, EnvPrefix: "DRPLANE", LookupEnv: env(map[string]string{
		"DRPLANE_PORT": "9", "DRPLANE_DC": "dc-b1",
	}), Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Level != "debug" {
		t.Errorf("flag must win: level = %q", cfg.Level)
	}
	if got := strings.Join(cfg.Etcd.Endpoints, ","); got != "http://f1,http://f2" {
		t.Errorf("flag slice must replace: %q", got)
	}
	if cfg.Port != 9 || cfg.DC != "dc-b1" {
		t.Errorf("env must win over file: port=%d dc=%q", cfg.Port, cfg.DC)
	}
	if cfg.Etcd.Timeout != 3*time.Second || cfg.Etcd.Password.Reveal() != "hunter2" {
		t.Errorf("file values lost: %+v", cfg.Etcd)
	}
	dump := Dump(cfg)
	if strings.Contains(dump, "hunter2") || !strings.Contains(dump, redacted) {
		t.Errorf("secret not redacted in dump:\n%s", dump)
	}
}

func TestErrors(t *testing.T) {
	t.Run("unknown key", func(t *testing.T) {
		err := Load(&testConf{}, Source{File: write(t, "etcd:\n  endpoint: [x]\n")})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "endpoint") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing etcd", func(t *testing.T) {
		err := Load(&testConf{}, Source{File: write(t, "")})
		var ce *Error
		if !errors.As(err, &ce) || ce.Field != "etcd.endpoints" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad env", func(t *testing.T) {
		err := Load(&testConf{}, Source{EnvPrefix: "X", LookupEnv: env(map[string]string{"X_ETCD_TIMEOUT": "soon"})})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "etcd.timeout") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		if err := Load(&testConf{}, Source{File: "/nonexistent/c.yaml"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("pw")
	for _, got := range []string{s.String(), string(must(s.MarshalJSON())), string(must(s.MarshalText()))} {
		if strings.Contains(got, "pw") {
			t.Fatalf("secret leaked: %q", got)
		}
	}
	if Secret("").String() != "" {
		t.Fatal("empty secret must print empty")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestSecretSHA256(t *testing.T) {
	// SHA-256 of "abc" (FIPS 180-2 test vector).
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := Secret("abc").SHA256(); got != want {
		t.Fatalf("SHA256 = %s, want %s", got, want)
	}
}
