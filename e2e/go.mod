module github.com/drplane/drplane/e2e

go 1.26.0

require (
	github.com/drplane/drplane/pkg v0.0.0
	github.com/go-sql-driver/mysql v1.10.1
	github.com/stretchr/testify v1.12.1
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)

replace github.com/drplane/drplane/pkg => ../pkg

replace github.com/drplane/drplane/proto => ../proto

replace github.com/drplane/drplane/cmd => ../cmd
