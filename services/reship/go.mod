module github.com/drplane/drplane/services/reship

go 1.26
