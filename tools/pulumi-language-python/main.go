// Command pulumi-language-python is a minimal Python language host for the Pulumi CLI.
//
// It is generated and built by goldsmith's scripts/install-pulumi.sh because the upstream host module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3) is not served by the module proxy the
// project can reach. It speaks the LanguageRuntime gRPC protocol of sdk/v3 and leaves the Python specifics to
// the SDK's python/toolchain package (virtualenv / pip / poetry / uv) and to the upstream
// pulumi-language-python-exec script, which must sit next to this binary.
//
// Supported: Handshake, GetPluginInfo, GetRequiredPackages (pulumi-plugin.json of installed packages), Run
// (incl. the virtualenv, toolchain and typechecker runtime options), InstallDependencies, About,
// GetProgramDependencies, RuntimeOptionsPrompts (none). Everything else answers Unimplemented.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/blang/semver"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
)

// version is set with -ldflags "-X main.version=...".
var version = "3.0.0-dev"

// exitCodeUserMessage is the exit code pulumi-language-python-exec uses after it printed an actionable error.
const exitCodeUserMessage = 32

// listPluginsPy prints, as JSON, every installed distribution that ships a pulumi-plugin.json.
const listPluginsPy = `
import importlib.metadata as md, json, sys
found = []
for dist in md.distributions():
    for f in dist.files or ():
        if f.name == "pulumi-plugin.json":
            found.append({"name": dist.metadata["Name"], "version": dist.version, "path": str(f.locate())})
json.dump(found, sys.stdout)
`

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	ctx        context.Context // cancelled when the engine goes away
	execScript string          // path of pulumi-language-python-exec
	tracing    string

	mu     sync.Mutex
	engine string
}

func main() {
	tracing := flag.String("tracing", "", "emit tracing to a Zipkin-compatible tracing endpoint")
	// Engines before ProgramInfo passed runtime options as flags: accept and ignore them.
	for _, name := range []string{"root", "virtualenv", "toolchain", "typechecker", "binary"} {
		flag.String(name, "", "ignored (runtime options arrive in ProgramInfo)")
	}
	flag.Parse()
	logging.InitLogging(false, 0, false)
	cmdutil.InitTracing("pulumi-language-python", "pulumi-language-python", *tracing)

	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		cmdutil.Exit(fmt.Errorf("locating own executable: %w", err))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &host{ctx: ctx, execScript: filepath.Join(filepath.Dir(self), "pulumi-language-python-exec"), tracing: *tracing}
	if engine := flag.Arg(0); engine != "" {
		h.engine = engine
		// Stop (and kill running programs) when the engine stops answering health checks.
		if err := rpcutil.Healthcheck(ctx, engine, 5*time.Minute, cancel); err != nil {
			cmdutil.Exit(fmt.Errorf("starting health check: %w", err))
		}
	}

	stop := make(chan bool, 1)
	go func() { <-ctx.Done(); stop <- true }()
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: stop,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("serving gRPC: %w", err))
	}
	// The engine reads the port from the first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		cmdutil.Exit(err)
	}
}

// programInfo returns req's ProgramInfo, or one made from the legacy directory fields.
func programInfo(info *pulumirpc.ProgramInfo, dir, entry string) *pulumirpc.ProgramInfo {
	if info != nil {
		return info
	}
	if entry == "" {
		entry = "."
	}
	return &pulumirpc.ProgramInfo{RootDirectory: dir, ProgramDirectory: dir, EntryPoint: entry}
}

// resolve turns the runtime options of Pulumi.yaml into a toolchain.
func resolve(info *pulumirpc.ProgramInfo) (toolchain.Toolchain, toolchain.PythonOptions, error) {
	opts := toolchain.PythonOptions{Root: info.GetRootDirectory(), ProgramDir: info.GetProgramDirectory()}
	o := info.GetOptions().AsMap()
	str := func(key string) (string, error) {
		v, ok := o[key]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("runtime option %q must be a string, got %v", key, v)
		}
		return s, nil
	}
	var err error
	if opts.Virtualenv, err = str("virtualenv"); err != nil {
		return nil, opts, err
	}
	tc, err := str("toolchain")
	if err != nil {
		return nil, opts, err
	}
	switch strings.ToLower(tc) {
	case "":
		opts.Toolchain = toolchain.Auto
	case "pip":
		opts.Toolchain = toolchain.Pip
	case "poetry":
		opts.Toolchain = toolchain.Poetry
	case "uv":
		opts.Toolchain = toolchain.Uv
	default:
		return nil, opts, fmt.Errorf("unsupported python toolchain %q (pip, poetry or uv)", tc)
	}
	checker, err := str("typechecker")
	if err != nil {
		return nil, opts, err
	}
	switch strings.ToLower(checker) {
	case "":
		opts.Typechecker = toolchain.TypeCheckerNone
	case "mypy":
		opts.Typechecker = toolchain.TypeCheckerMypy
	case "pyright":
		opts.Typechecker = toolchain.TypeCheckerPyright
	default:
		return nil, opts, fmt.Errorf("unsupported python typechecker %q (mypy or pyright)", checker)
	}
	t, err := toolchain.ResolveToolchain(opts)
	return t, opts, err
}

// withEnv completes cmd's environment (nil means "inherit") with extra variables.
func withEnv(cmd *exec.Cmd, extra ...string) {
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, extra...)
}

func (h *host) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engine = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// GetRequiredPlugins is superseded by GetRequiredPackages; the engine only calls it on hosts without the latter.
func (h *host) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

// GetRequiredPackages lists the resource plugins announced by installed packages' pulumi-plugin.json files.
func (h *host) GetRequiredPackages(
	ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	tc, _, err := resolve(programInfo(req.GetInfo(), "", ""))
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		// Run reports the broken virtualenv with its full explanation; no packages to announce meanwhile.
		logging.V(5).Infof("GetRequiredPackages: %v", err)
		return &pulumirpc.GetRequiredPackagesResponse{}, nil
	}
	cmd, err := tc.Command(ctx, "-c", listPluginsPy)
	if err != nil {
		return nil, err
	}
	withEnv(cmd)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing installed packages: %w", err)
	}
	var dists []struct{ Name, Version, Path string }
	if err := json.Unmarshal(out, &dists); err != nil {
		return nil, fmt.Errorf("listing installed packages: %w", err)
	}
	resp := &pulumirpc.GetRequiredPackagesResponse{}
	seen := map[string]bool{}
	for _, d := range dists {
		pj, err := plugin.LoadPulumiPluginJSON(d.Path)
		if err != nil {
			logging.V(5).Infof("ignoring %s: %v", d.Path, err)
			continue
		}
		if !pj.Resource {
			continue
		}
		name := pj.Name
		if name == "" {
			name = strings.ReplaceAll(strings.ToLower(d.Name), "_", "-")
			name = strings.TrimPrefix(name, "pulumi-")
		}
		ver := pj.Version
		if ver == "" {
			if v, err := semver.ParseTolerant(d.Version); err == nil {
				ver = v.String()
			}
		}
		if ver != "" && !strings.HasPrefix(ver, "v") {
			ver = "v" + ver
		}
		dep := &pulumirpc.PackageDependency{Kind: "resource", Name: name, Version: ver, Server: pj.Server}
		if p := pj.Parameterization; p != nil {
			dep.Parameterization = &pulumirpc.PackageParameterization{Name: p.Name, Version: p.Version, Value: p.Value}
		}
		if p := pj.ExtensionParameterization; p != nil {
			dep.Extension = &pulumirpc.PackageParameterization{Name: p.Name, Version: p.Version, Value: p.Value}
		}
		key := fmt.Sprintf("%s@%s/%v/%v", dep.Name, dep.Version, dep.Parameterization, dep.Extension)
		if !seen[key] {
			seen[key] = true
			resp.Packages = append(resp.Packages, dep)
		}
	}
	return resp, nil
}

// Run type-checks the program if asked to, then runs it through pulumi-language-python-exec.
func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	if req.GetAttachDebugger() {
		return nil, errors.New("this python language host does not support attaching a debugger")
	}
	info := programInfo(req.GetInfo(), req.GetPwd(), req.GetProgram())
	tc, opts, err := resolve(info)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	// Kill the program when either the request or the engine goes away.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.ctx.Done():
			cancel()
		case <-ctx.Done():
		}
	}()

	pwd := req.GetPwd()
	if pwd == "" {
		pwd = info.GetProgramDirectory()
	}

	if opts.Typechecker != toolchain.TypeCheckerNone {
		module := "mypy"
		if opts.Typechecker == toolchain.TypeCheckerPyright {
			module = "pyright"
		}
		cmd, err := tc.ModuleCommand(ctx, module, ".")
		if err != nil {
			return &pulumirpc.RunResponse{Error: err.Error()}, nil
		}
		withEnv(cmd)
		cmd.Dir, cmd.Stdout, cmd.Stderr = pwd, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("%s type checking failed: %v", module, err)}, nil
		}
	}

	h.mu.Lock()
	engine := h.engine
	h.mu.Unlock()
	args := []string{
		h.execScript,
		"--monitor", req.GetMonitorAddress(),
		"--engine", engine,
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", pwd,
		"--root_directory", info.GetRootDirectory(),
		"--parallel", strconv.Itoa(int(req.GetParallel())),
	}
	if req.GetOrganization() != "" {
		args = append(args, "--organization", req.GetOrganization())
	}
	if req.GetDryRun() {
		args = append(args, "--dry_run", "true")
	}
	if h.tracing != "" {
		args = append(args, "--tracing", h.tracing)
	}
	entry := info.GetEntryPoint()
	if entry == "" {
		entry = "."
	}
	args = append(append(args, "--", entry), req.GetArgs()...)

	// The exec script wants a JSON object and a JSON list, never null.
	configMap := req.GetConfig()
	if configMap == nil {
		configMap = map[string]string{}
	}
	config, err := json.Marshal(configMap)
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secrets, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}

	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	withEnv(cmd,
		"PULUMI_CONFIG="+string(config),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secrets),
		"PYTHONUNBUFFERED=1",
	)
	cmd.Dir, cmd.Stdout, cmd.Stderr = pwd, os.Stdout, os.Stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return &pulumirpc.RunResponse{}, nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() == exitCodeUserMessage:
		// The program already reported the error to the user.
		return &pulumirpc.RunResponse{Bail: true}, nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode()),
		}, nil
	default:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("running the program: %v", err)}, nil
	}
}

// streamWriter forwards a command's output to an InstallDependencies stream.
type streamWriter struct {
	mu     *sync.Mutex
	send   func(*pulumirpc.InstallDependenciesResponse) error
	stderr bool
}

func (w streamWriter) Write(p []byte) (int, error) {
	data := append([]byte(nil), p...)
	msg := &pulumirpc.InstallDependenciesResponse{Stdout: data}
	if w.stderr {
		msg = &pulumirpc.InstallDependenciesResponse{Stderr: data}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.send(msg); err != nil {
		return 0, err
	}
	return len(p), nil
}

// InstallDependencies creates the virtual environment if needed and installs the program's dependencies.
func (h *host) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest, server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	info := programInfo(req.GetInfo(), req.GetDirectory(), "")
	tc, _, err := resolve(info)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	stdout := streamWriter{mu: &mu, send: server.Send}
	stderr := streamWriter{mu: &mu, send: server.Send, stderr: true}
	return tc.InstallDependencies(server.Context(), info.GetProgramDirectory(), req.GetUseLanguageVersionTools(),
		true /*showOutput*/, stdout, stderr)
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	tc, opts, err := resolve(programInfo(req.GetInfo(), "", ""))
	if err != nil {
		return nil, err
	}
	about, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{
		Executable: about.PythonExecutable,
		Version:    about.PythonVersion.String(),
		Metadata: map[string]string{
			"toolchain":        toolchain.Name(opts.Toolchain),
			"toolchainVersion": about.ToolchainVersion.String(),
		},
	}, nil
}

func (h *host) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	tc, _, err := resolve(programInfo(req.GetInfo(), req.GetPwd(), req.GetProgram()))
	if err != nil {
		return nil, err
	}
	pkgs, err := tc.ListPackages(ctx, req.GetTransitiveDependencies())
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	for _, p := range pkgs {
		resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return resp, nil
}

// RuntimeOptionsPrompts asks nothing: `pulumi new` keeps the template's options.
func (h *host) RuntimeOptionsPrompts(
	context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}
