// Package oci builds drplane's container images without a container
// engine: one image per service, assembled with go-containerregistry from an
// empty image and two layers (the files every image shares, then the
// service's static binary), written to an OCI image layout and to a tarball
// `docker load` and `podman load` read.
//
// The spec in this file is the one description of the images' contents; the
// repository's Dockerfile produces the same file layout and configuration
// for Docker users, and a test keeps the two in step.
package oci

import (
	"fmt"
	"path"
	"time"
)

// Where things are in every image.
const (
	// BinDir holds the service binary, the image's entrypoint.
	BinDir = "/usr/local/bin"
	// User is the numeric user and group the process runs as (Kubernetes'
	// runAsNonRoot can only check a numeric user).
	User = "65532:65532"
	// PathEnv is the only environment variable of the image.
	PathEnv = "PATH=" + BinDir
	// CACertsPath is the CA bundle Go's crypto/x509 reads on Linux.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// Source is the project's repository (labels source and url).
	Source = "https://github.com/drplane/drplane"
)

// Service is one image.
type Service struct {
	Name        string
	Description string
}

// Services are the four service images, in build order.
func Services() []Service {
	return []Service{
		{"coordinator", "drplane coordinator: topology, shard map and failover API, one global leader applying mutations"},
		{"haagent", "drplane HA agent: in-DC MariaDB failure analysis, fencing and failover"},
		{"reship", "drplane reship: binlog capture of a DC's master, shipped to NATS JetStream"},
		{"collector", "drplane collector: exactly-once apply of other DCs' changes to the DC's master"},
	}
}

// FileKind says where a file of an image comes from.
type FileKind int

// The kinds of files.
const (
	// FromRepo is a file of the repository (Source is its path from the root).
	FromRepo FileKind = iota
	// FromBuildHost is a file of the machine that builds (Source is its
	// absolute path there; the Dockerfile's build stage has it at the same path).
	FromBuildHost
	// FromStaticBuild is a binary of `make static` (Source is its name in
	// the output directory).
	FromStaticBuild
)

// File is one regular file of an image, owned by root.
type File struct {
	// Path in the image, absolute.
	Path   string
	Kind   FileKind
	Source string
	Mode   int64
}

// BaseFiles are the files every image has, the first layer: the users and
// groups (root and nonroot, 65532), and the CA certificates.
func BaseFiles() []File {
	return []File{
		{Path: "/etc/passwd", Kind: FromRepo, Source: "deploy/image/passwd", Mode: 0o644},
		{Path: "/etc/group", Kind: FromRepo, Source: "deploy/image/group", Mode: 0o644},
		{Path: CACertsPath, Kind: FromBuildHost, Source: CACertsPath, Mode: 0o644},
	}
}

// BinaryFile is the service's binary, the second layer.
func BinaryFile(service string) File {
	return File{Path: Entrypoint(service)[0], Kind: FromStaticBuild, Source: service, Mode: 0o755}
}

// Entrypoint is the service image's entrypoint; the chart passes only
// arguments (--config ...).
func Entrypoint(service string) []string {
	return []string{path.Join(BinDir, service)}
}

// Meta is what differs between builds: the labels' version, revision and
// time of creation.
type Meta struct {
	// Version is the stamped daemon.Version and the image tag.
	Version string
	// Revision is the source's commit.
	Revision string
	// Created is the image's creation time and every file's modification
	// time; the commit's time makes builds of one commit identical.
	Created time.Time
}

// Label keys (OCI image spec annotations).
const (
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
	LabelVersion     = "org.opencontainers.image.version"
	LabelRevision    = "org.opencontainers.image.revision"
	LabelCreated     = "org.opencontainers.image.created"
	LabelSource      = "org.opencontainers.image.source"
	LabelURL         = "org.opencontainers.image.url"
)

// Labels are the image's labels, also set as its manifest's annotations.
func Labels(s Service, m Meta) map[string]string {
	return map[string]string{
		LabelTitle:       s.Name,
		LabelDescription: s.Description,
		LabelVersion:     m.Version,
		LabelRevision:    m.Revision,
		LabelCreated:     m.Created.UTC().Format(time.RFC3339),
		LabelSource:      Source,
		LabelURL:         Source,
	}
}

// Reference is the image's name: <repo>/<service>:<version>, e.g.
// ghcr.io/drplane/coordinator:0.1.0-dev, the chart's default.
func Reference(repo, service, version string) string {
	return fmt.Sprintf("%s/%s:%s", repo, service, version)
}
