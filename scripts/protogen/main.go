// Command protogen compiles the project's .proto files and runs the pinned Go generators
// over them, with no protoc binary: scripts/gen-proto.sh calls it (`make proto`,
// `make proto-check`).
//
// Why protocompile and not buf or protoc: CI and the developers' machines are plain Debian
// boxes with no protoc and no download at build time, so the compiler must come from the
// Go module cache like everything else. buf as a `tool` directive would do it, but pulls
// in a large module graph (its CLI, linters, registry clients) that every `go mod` of this
// module would then carry; protocompile is the parser and linker buf itself is built on,
// with two small dependencies. The generators are the `tool` directives of go.mod
// (protoc-gen-go, protoc-gen-go-grpc), run as `go tool NAME`, so their versions are pinned
// with grpc's and protobuf's in one file.
//
// Usage: protogen -root proto -out DIR FILE.proto... (FILE relative to -root).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/protoutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/pluginpb"
)

// generators are the protoc plugins run over every file, each with its parameter.
// paths=source_relative writes backend/v1/backend.proto's code beside it.
var generators = []struct{ tool, param string }{
	{"protoc-gen-go", "paths=source_relative"},
	{"protoc-gen-go-grpc", "paths=source_relative"},
}

func main() {
	root := flag.String("root", "proto", "the import root the .proto files are named relative to")
	out := flag.String("out", "proto", "where the generated files go (paths relative to it mirror the .proto files')")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "protogen: name at least one .proto file, relative to -root")
		os.Exit(2)
	}
	if err := run(context.Background(), *root, *out, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, root, out string, files []string) error {
	req, err := request(ctx, root, files)
	if err != nil {
		return err
	}
	for _, g := range generators {
		req.Parameter = proto.String(g.param)
		resp, err := generate(ctx, g.tool, req)
		if err != nil {
			return err
		}
		if err := write(out, resp); err != nil {
			return fmt.Errorf("%s: %w", g.tool, err)
		}
	}
	return nil
}

// request compiles files as protoc would and returns what protoc hands a plugin: every
// file the named ones need, dependencies first, with source info so comments in the
// .proto reach the generated code.
func request(ctx context.Context, root string, files []string) (*pluginpb.CodeGeneratorRequest, error) {
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{root}}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	compiled, err := c.Compile(ctx, files...)
	if err != nil {
		return nil, fmt.Errorf("compiling %s under %s: %w", strings.Join(files, ", "), root, err)
	}
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: files}
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protoutil.ProtoFromFileDescriptor(f))
	}
	for _, f := range compiled {
		add(f)
	}
	return req, nil
}

// generate runs one pinned generator over req (stdin: the request, stdout: the response,
// as protoc runs plugins).
func generate(ctx context.Context, tool string, req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, error) {
	in, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the request for %s: %w", tool, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "tool", tool)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go tool %s: %w: %s (is it a tool directive in go.mod? `go get -tool` adds it)", tool, err, strings.TrimSpace(stderr.String()))
	}
	resp := &pluginpb.CodeGeneratorResponse{}
	if err := proto.Unmarshal(stdout.Bytes(), resp); err != nil {
		return nil, fmt.Errorf("go tool %s answered something that is not a CodeGeneratorResponse: %w", tool, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("go tool %s: %s", tool, resp.GetError())
	}
	return resp, nil
}

// write puts every generated file under out, refusing a name that would land outside it.
func write(out string, resp *pluginpb.CodeGeneratorResponse) error {
	for _, f := range resp.File {
		if f.InsertionPoint != nil {
			return fmt.Errorf("insertion points are not supported (file %s)", f.GetName())
		}
		name := filepath.FromSlash(f.GetName())
		if !filepath.IsLocal(name) {
			return fmt.Errorf("generated file name %q leaves %s", f.GetName(), out)
		}
		path := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(f.GetContent()), 0o644); err != nil {
			return err
		}
	}
	return nil
}
