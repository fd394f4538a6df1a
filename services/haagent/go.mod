module github.com/drplane/drplane/services/haagent

go 1.26
