module github.com/drplane/drplane/cmd

go 1.26
