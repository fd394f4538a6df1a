module github.com/drplane/drplane/cmd

go 1.26

require (
	github.com/drplane/drplane/pkg v0.0.0
	github.com/drplane/drplane/proto v0.0.0
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
)

replace github.com/drplane/drplane/pkg => ../pkg

replace github.com/drplane/drplane/proto => ../proto
