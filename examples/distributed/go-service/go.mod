module github.com/raceway-dev/raceway/examples/distributed/go-service

go 1.23

require github.com/raceway-dev/raceway/sdks/go v0.0.0

require github.com/klauspost/compress v1.18.2 // indirect

replace github.com/raceway-dev/raceway/sdks/go => ../../../sdks/go
