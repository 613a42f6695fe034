module kubefence.test/pause

go 1.22
