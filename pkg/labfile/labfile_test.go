package labfile

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lab.json")
	if _, err := Read(p); !errors.Is(err, ErrNoLab) {
		t.Fatalf("missing file: %v", err)
	}
	in := &Lab{API: API{GRPC: "127.0.0.1:1", Token: "t"}, DCs: []DC{{Name: "dc-a1", MySQL: []Instance{{Name: "db1", Pid: 9}}}}}
	if err := Write(p, in); err != nil {
		t.Fatal(err)
	}
	out, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	dc, ok := out.DC("dc-a1")
	if !ok || dc.MySQL[0].Pid != 9 || out.API.Token != "t" {
		t.Fatalf("round trip lost data: %+v", out)
	}
}
