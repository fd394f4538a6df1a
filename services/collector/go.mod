module github.com/drplane/drplane/services/collector

go 1.26
