module github.com/drplane/drplane/services/haagent

go 1.26

require (
	github.com/drplane/drplane/pkg v0.0.0
	github.com/drplane/drplane/proto v0.0.0
)

replace github.com/drplane/drplane/pkg => ../../pkg

replace github.com/drplane/drplane/proto => ../../proto
