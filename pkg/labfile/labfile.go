// Package labfile is the lab.json contract written by `drlab up` and read by
// drctl, the drill and external checkers: endpoints, process ids and
// credentials of a running lab.
package labfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the lab file's name inside a lab directory.
const FileName = "lab.json"

// Path returns the lab file for p, which names either the file itself or the
// lab directory holding it.
func Path(p string) string {
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return filepath.Join(p, FileName)
	}
	return p
}

// ErrNoLab means the file does not exist.
var ErrNoLab = errors.New("labfile: no lab.json")

// Lab is the whole file.
type Lab struct {
	API       API        `json:"api"`
	Etcd      []string   `json:"etcd"`
	DCs       []DC       `json:"dcs"`
	Keyspaces []Keyspace `json:"keyspaces"`
	Drlab     Drlab      `json:"drlab"`
}

// API is the coordinator's control API.
type API struct {
	GRPC string `json:"grpc"`
	HTTP string `json:"http"`
	// Token is an admin's bearer token, ViewerToken a viewer's; every
	// coordinator of the lab accepts both.
	Token       string `json:"token"`
	ViewerToken string `json:"viewer_token"`
}

// DC is one data center of the lab.
type DC struct {
	Name        string     `json:"name"`
	City        string     `json:"city"`
	NATS        string     `json:"nats"`
	MySQL       []Instance `json:"mysql"`
	Services    []Service  `json:"services"`
	AppUser     string     `json:"app_user"`
	AppPassword string     `json:"app_password"`
}

// Instance is one mysqld.
type Instance struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	Pid  int    `json:"pid"`
}

// Service is one drplane process.
type Service struct {
	Name       string `json:"name"`
	Pid        int    `json:"pid"`
	HealthAddr string `json:"health_addr,omitempty"`
}

// Keyspace is a sharded table.
type Keyspace struct {
	Name     string `json:"name"`
	Shards   int    `json:"shards"`
	Database string `json:"database"`
	Table    string `json:"table"`
	ShardKey string `json:"shard_key"`
}

// Drlab is the lab process itself (it also runs etcd and NATS).
type Drlab struct {
	Pid int    `json:"pid"`
	Dir string `json:"dir"`
}

// Read loads a lab.json.
func Read(path string) (*Lab, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s (is a lab running? start one with drlab up)", ErrNoLab, path)
	}
	if err != nil {
		return nil, fmt.Errorf("labfile: %w", err)
	}
	var l Lab
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("labfile: %s: %w", path, err)
	}
	return &l, nil
}

// Write stores l at path atomically (0600: it holds credentials).
func Write(path string, l *Lab) error {
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), ".lab.json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("labfile: %w", err)
	}
	return os.Rename(tmp, path)
}

// DC returns the named DC.
func (l *Lab) DC(name string) (*DC, bool) {
	for i := range l.DCs {
		if l.DCs[i].Name == name {
			return &l.DCs[i], true
		}
	}
	return nil, false
}
