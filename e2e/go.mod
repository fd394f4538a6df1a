module github.com/drplane/drplane/e2e

go 1.26
