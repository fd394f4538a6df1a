module github.com/drplane/drplane/services/coordinator

go 1.26
