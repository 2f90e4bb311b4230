// Command hosttest loads the keystore plugin exactly as OpenKCM's CMK does,
// through the real plugin-sdk catalog (go-plugin, AutoMTLS, Init, Bind,
// Configure), and then acts as a JSON bridge for the Rust integration
// tests: one JSON command per line on stdin, one JSON answer per line on
// stdout. Logs (the host's and the plugin's, which the catalog relays) go
// to stderr.
//
// Commands:
//
//	{"method": "GetKey", "request": {...}}            SDK RPCs via plugin-sdk's generated client
//	{"method": "/openbao.keystore.v1.L1KeyCrypto/Encrypt", "request": {...}}
//	                                                  any RPC of the project's protos (dynamic)
//	{"method": "health"}                              grpc.health.v1 Check("plugin"), like CMK's watcher
//	{"method": "info"}                                plugin info (name, type, build)
//	{"method": "bench", "bench": {...}}               load test, see bench.go
//	{"method": "parallel", "calls": [{...}, ...]}     the calls at once; their answers in order
//	{"method": "byok_wrap"|"local_decrypt", ...}      a BYOK customer's local steps, see byok.go
//	{"method": "close"}                               catalog.Close (Deinit, Shutdown, kill)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/bufbuild/protocompile"
	"github.com/openkcm/plugin-sdk/api"
	"github.com/openkcm/plugin-sdk/pkg/catalog"
	"github.com/openkcm/plugin-sdk/pkg/plugin"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

type opsFacade struct {
	plugin.Facade
	operationsv1.KeystoreInstanceKeyOperationPluginClient
}

func (*opsFacade) Version() uint { return 1 }

type opsRepo struct{ facade *opsFacade }

func (r *opsRepo) Binder() any                  { return func(f *opsFacade) { r.facade = f } }
func (r *opsRepo) Versions() []api.Version      { return []api.Version{v1{}} }
func (r *opsRepo) Clear()                       { r.facade = nil }
func (r *opsRepo) Constraints() api.Constraints { return api.ExactlyOne() }

type v1 struct{}

func (v1) New() api.Facade  { return new(opsFacade) }
func (v1) Deprecated() bool { return false }

type repository struct{ ops opsRepo }

func (r *repository) Plugins() map[string]api.PluginRepo {
	return map[string]api.PluginRepo{operationsv1.Type: &r.ops}
}
func (r *repository) Services() []api.ServiceRepo { return nil }

type command struct {
	Method  string          `json:"method"`
	Request json.RawMessage `json:"request"`
	Bench   *benchSpec      `json:"bench"`
	Calls   []command       `json:"calls"`
	Timeout int             `json:"timeout_ms"`
}

type answer struct {
	Code     string            `json:"code"`
	Message  string            `json:"message,omitempty"`
	Response json.RawMessage   `json:"response,omitempty"`
	Reasons  []string          `json:"reasons,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

type host struct {
	cat   *catalog.Catalog
	repo  *repository
	conn  grpc.ClientConnInterface
	files map[string]protoreflect.MethodDescriptor
}

func main() {
	pluginPath := flag.String("plugin", "", "path of the plugin binary")
	protoDir := flag.String("proto", "", "folder of the project's .proto files")
	yamlFile := flag.String("config", "", "file with the plugin's yamlConfiguration (optional)")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	slog.SetDefault(logger)

	yaml := ""
	if *yamlFile != "" {
		data, err := os.ReadFile(*yamlFile)
		if err != nil {
			fatal("read config: %v", err)
		}
		yaml = string(data)
	}
	methods, err := compileProtos(*protoDir)
	if err != nil {
		fatal("compile protos: %v", err)
	}
	repo := &repository{}
	start := time.Now()
	cat, err := catalog.New(context.Background(), catalog.Config{
		Logger: logger,
		PluginConfigs: []catalog.PluginConfig{{
			Name:              "OPENBAO",
			Type:              operationsv1.Type,
			Path:              *pluginPath,
			LogLevel:          "debug",
			Tags:              []string{"hyok", "default_keystore"},
			YamlConfiguration: yaml,
		}},
	}, repo)
	if err != nil {
		emit(map[string]any{"ready": false, "error": err.Error()})
		os.Exit(1)
	}
	p := cat.LookupByTypeAndName(operationsv1.Type, "OPENBAO")
	h := &host{cat: cat, repo: repo, conn: p.ClientConnection(), files: methods}
	emit(map[string]any{
		"ready":    true,
		"load_ms":  time.Since(start).Milliseconds(),
		"build":    p.Info().Build(),
		"services": p.GrpcServiceNames(),
	})

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() {
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			fatal("bad command: %v", err)
		}
		if cmd.Method == "close" {
			begin := time.Now()
			err := cat.Close()
			emit(map[string]any{"code": "OK", "close_ms": time.Since(begin).Milliseconds(), "error": errString(err)})
			return
		}
		emit(h.run(cmd))
	}
}

func (h *host) run(cmd command) any {
	timeout := 60 * time.Second
	if cmd.Timeout > 0 {
		timeout = time.Duration(cmd.Timeout) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	switch cmd.Method {
	case "health":
		resp, err := grpc_health_v1.NewHealthClient(h.conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "plugin"})
		return result(resp, err)
	case "bench":
		return h.bench(ctx, cmd.Bench)
	case "parallel":
		return h.parallel(cmd.Calls)
	case "byok_wrap":
		return byokWrap(cmd.Request)
	case "local_decrypt":
		return localDecrypt(cmd.Request)
	}
	if strings.HasPrefix(cmd.Method, "/") {
		return h.dynamic(ctx, cmd.Method, cmd.Request)
	}
	ops := h.repo.ops.facade
	if ops == nil {
		return answer{Code: "HostError", Message: "plugin not bound"}
	}
	switch cmd.Method {
	case "GetKey":
		return call(ctx, cmd.Request, &operationsv1.GetKeyRequest{}, ops.GetKey)
	case "CreateKey":
		return call(ctx, cmd.Request, &operationsv1.CreateKeyRequest{}, ops.CreateKey)
	case "DeleteKey":
		return call(ctx, cmd.Request, &operationsv1.DeleteKeyRequest{}, ops.DeleteKey)
	case "EnableKey":
		return call(ctx, cmd.Request, &operationsv1.EnableKeyRequest{}, ops.EnableKey)
	case "DisableKey":
		return call(ctx, cmd.Request, &operationsv1.DisableKeyRequest{}, ops.DisableKey)
	case "GetImportParameters":
		return call(ctx, cmd.Request, &operationsv1.GetImportParametersRequest{}, ops.GetImportParameters)
	case "ImportKeyMaterial":
		return call(ctx, cmd.Request, &operationsv1.ImportKeyMaterialRequest{}, ops.ImportKeyMaterial)
	case "ValidateKey":
		return call(ctx, cmd.Request, &operationsv1.ValidateKeyRequest{}, ops.ValidateKey)
	case "ValidateKeyAccessData":
		return call(ctx, cmd.Request, &operationsv1.ValidateKeyAccessDataRequest{}, ops.ValidateKeyAccessData)
	case "TransformCryptoAccessData":
		return call(ctx, cmd.Request, &operationsv1.TransformCryptoAccessDataRequest{}, ops.TransformCryptoAccessData)
	case "ExtractKeyRegion":
		return call(ctx, cmd.Request, &operationsv1.ExtractKeyRegionRequest{}, ops.ExtractKeyRegion)
	}
	return answer{Code: "HostError", Message: "unknown method " + cmd.Method}
}

// parallel starts every call at once, as concurrent CMK requests would
// arrive, and answers with their answers in the calls' order.
func (h *host) parallel(calls []command) any {
	answers := make([]any, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = h.run(c)
		}()
	}
	wg.Wait()
	return map[string]any{"code": "OK", "answers": answers}
}

// call decodes the protojson request, calls the SDK client and encodes the answer.
func call[Req proto.Message, Resp proto.Message](
	ctx context.Context, raw json.RawMessage, req Req,
	rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error),
) answer {
	if len(raw) > 0 {
		if err := protojson.Unmarshal(raw, req); err != nil {
			return answer{Code: "HostError", Message: "request: " + err.Error()}
		}
	}
	resp, err := rpc(ctx, req)
	return result(resp, err)
}

func result(resp proto.Message, err error) answer {
	if err != nil {
		st, _ := status.FromError(err)
		a := answer{Code: st.Code().String(), Message: st.Message(), Metadata: map[string]string{}}
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				a.Reasons = append(a.Reasons, info.GetReason())
				for k, v := range info.GetMetadata() {
					a.Metadata[k] = v
				}
			}
		}
		return a
	}
	out, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
	if err != nil {
		return answer{Code: "HostError", Message: "response: " + err.Error()}
	}
	return answer{Code: "OK", Response: out}
}

// dynamic calls any method of the project's own protos (extensions such as
// GetKeyVersions and openbao.keystore.v1.L1KeyCrypto).
func (h *host) dynamic(ctx context.Context, method string, raw json.RawMessage) answer {
	md, ok := h.files[method]
	if !ok {
		return answer{Code: "HostError", Message: "no such method in the project's protos: " + method}
	}
	req := dynamicpb.NewMessage(md.Input())
	if len(raw) > 0 {
		if err := protojson.Unmarshal(raw, req); err != nil {
			return answer{Code: "HostError", Message: "request: " + err.Error()}
		}
	}
	resp := dynamicpb.NewMessage(md.Output())
	err := h.conn.Invoke(ctx, method, req, resp)
	return result(resp, err)
}

func compileProtos(dir string) (map[string]protoreflect.MethodDescriptor, error) {
	methods := map[string]protoreflect.MethodDescriptor{}
	if dir == "" {
		return methods, nil
	}
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".proto") && !strings.Contains(path, "/google/") {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	compiler := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{dir}}),
	}
	compiled, err := compiler.Compile(context.Background(), files...)
	if err != nil {
		return nil, err
	}
	for _, f := range compiled {
		services := f.Services()
		for i := 0; i < services.Len(); i++ {
			svc := services.Get(i)
			for j := 0; j < svc.Methods().Len(); j++ {
				m := svc.Methods().Get(j)
				methods[fmt.Sprintf("/%s/%s", svc.FullName(), m.Name())] = m
			}
		}
	}
	return methods, nil
}

func emit(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		fatal("encode: %v", err)
	}
	fmt.Fprintln(os.Stdout, string(data))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "hosttest: "+format+"\n", args...)
	os.Exit(2)
}
