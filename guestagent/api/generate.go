// Package api holds the wire contract of the guest agent's control service,
// berth.agent.v1.Agent: agent.proto and the Go code generated from it. It
// owns no behaviour; the server is guestagent/control and the client lives
// in the host agent.
//
// The generated files are committed. `go generate ./guestagent/api/` (what
// `make generate` runs) rebuilds them with protoc from Debian's
// protobuf-compiler and the protoc-gen-go and protoc-gen-go-grpc plugins
// installed by `go install` (looked up in $(go env GOPATH)/bin, then PATH).
// protoc runs from the module root so that the recorded source path is
// guestagent/api/agent.proto. generate_test.go fails when the committed
// files differ from a fresh run.
package api

//go:generate sh -c "PATH=\"$DOLLAR(go env GOPATH)/bin:$DOLLAR{PATH}\" exec protoc -I ../.. --go_out=../.. --go_opt=paths=source_relative --go-grpc_out=../.. --go-grpc_opt=paths=source_relative guestagent/api/agent.proto"
