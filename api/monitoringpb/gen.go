package monitoringpb

// protoc comes from Debian's protobuf-compiler (3.21.12); the plugins are the
// tool versions pinned in go.mod.
//go:generate sh -c "protoc -I ../../proto --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=../.. --go_opt=module=github.com/carverauto/fortress --go-grpc_out=../.. --go-grpc_opt=module=github.com/carverauto/fortress monitoring/control.proto"
