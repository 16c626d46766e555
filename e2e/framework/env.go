package framework

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// dirPrefix names the private temp directories of Envs; stale ones from
	// crashed test binaries are found by it.
	dirPrefix = "nri-netattach-e2e-"
	// bridgePrefix names primary bridges ("nnae2e" + 6 hex digits).
	bridgePrefix = "nnae2e"
	// cgroupPrefix names the pods' cgroup parent ("/nri-netattach-e2e-<hex>").
	cgroupPrefix = "nri-netattach-e2e-"

	defaultNRIRequestTimeout      = 2 * time.Second
	defaultNRIRegistrationTimeout = 5 * time.Second
	// closeTimeout bounds the CRI clean-up in Close.
	closeTimeout = 60 * time.Second
)

// Options configures Start. The zero value is usable.
type Options struct {
	// BinDir holds containerd, runc, the CNI plugins and the pause image.
	// Default: DefaultBinDir().
	BinDir string
	// NRIRequestTimeout is containerd's NRI plugin_request_timeout.
	// Default: 2s.
	NRIRequestTimeout time.Duration
	// NRIRegistrationTimeout is containerd's NRI plugin_registration_timeout.
	// Default: 5s.
	NRIRegistrationTimeout time.Duration
	// PluginPath and PluginConfigPath are containerd's NRI plugin_path and
	// plugin_config_path, for plugins containerd launches itself
	// ("pre-installed" mode). Default: empty directories under Dir.
	PluginPath, PluginConfigPath string
	// PodSubnet is the primary network's IPv4 subnet. Default: the first
	// 10.88.N.0/24, N >= 77, not used on this host or by another Env.
	PodSubnet string
	// LogLevel is containerd's log level. Default: "debug".
	LogLevel string
	// DefaultValidator, if set, enables NRI's built-in default validator
	// (for example with required plugins).
	DefaultValidator *DefaultValidator
	// LogArchiveDir, if set, receives a copy of containerd's and the plugin
	// processes' logs when the Env is closed (Dir itself is removed).
	LogArchiveDir string
	// ExtraCNIBinDirs are searched by containerd for CNI plugins after
	// the CNI plugins of BinDir (for a plugin that is not part of the
	// test build, such as the bench's Multus).
	ExtraCNIBinDirs []string
}

// Env is a private containerd with CRI, NRI and a primary bridge network.
// Create it with Start and always Close it.
type Env struct {
	// Dir is the private temporary root of everything the Env creates.
	Dir string
	// BinDir is the directory the binaries were taken from.
	BinDir string
	// NRISocket is where external NRI plugins connect.
	NRISocket string
	// CNIBinDir holds the CNI plugins (the pinned upstream ones and the
	// e2e test plugins); use it as the plugin's CNI binary directory.
	CNIBinDir string
	// PrimaryBridge is the host bridge of the primary network.
	PrimaryBridge string
	// PrimaryNetwork is the CNI network name of the primary network.
	PrimaryNetwork string
	// PodSubnet is the primary network's subnet (CIDR).
	PodSubnet string
	// CgroupParent is the cgroup parent of every pod RunPod creates.
	CgroupParent string
	// Snapshotter is the containerd snapshotter in use (overlayfs or native).
	Snapshotter string

	// Runtime and Image are CRI clients of the Env's containerd.
	Runtime runtimeapi.RuntimeServiceClient
	Image   runtimeapi.ImageServiceClient

	opts    Options
	layout  layout
	conn    *grpc.ClientConn
	daemon  *daemon
	procSeq atomic.Int64

	mu        sync.Mutex
	pods      map[string]*runtimeapi.PodSandboxConfig // sandbox id -> config used
	sandboxes map[string]bool                         // every sandbox id seen
	procs     []*Process

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Start creates a private temp directory, writes the containerd and CNI
// configuration, starts containerd, waits until CRI reports RuntimeReady and
// NetworkReady, and imports the pause image. It must run as root. On error
// everything created so far is removed again. Leftovers of Envs whose test
// binary died without Close are removed first.
func Start(ctx context.Context, opts Options) (*Env, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("e2e framework: must run as root")
	}
	if opts.BinDir == "" {
		dir, err := DefaultBinDir()
		if err != nil {
			return nil, fmt.Errorf("e2e framework: %w", err)
		}
		opts.BinDir = dir
	}
	binDir, err := filepath.Abs(opts.BinDir)
	if err != nil {
		return nil, fmt.Errorf("e2e framework: bin dir: %w", err)
	}
	opts.BinDir = binDir
	if err := CheckBinaries(binDir); err != nil {
		return nil, fmt.Errorf("e2e framework: %w", err)
	}
	if opts.NRIRequestTimeout <= 0 {
		opts.NRIRequestTimeout = defaultNRIRequestTimeout
	}
	if opts.NRIRegistrationTimeout <= 0 {
		opts.NRIRegistrationTimeout = defaultNRIRegistrationTimeout
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}

	// Best effort: a failure to clean an old Env must not fail this one.
	_ = CleanupStale()

	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("e2e framework: create temp dir: %w", err)
	}
	suffix, err := freeSuffix()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("e2e framework: %w", err)
	}
	e := &Env{
		Dir:            dir,
		BinDir:         binDir,
		CNIBinDir:      binDir,
		PrimaryBridge:  bridgePrefix + suffix,
		PrimaryNetwork: bridgePrefix + "-" + suffix,
		CgroupParent:   "/" + cgroupPrefix + suffix,
		opts:           opts,
		layout:         newLayout(dir),
		pods:           map[string]*runtimeapi.PodSandboxConfig{},
		sandboxes:      map[string]bool{},
	}
	e.NRISocket = e.layout.nriSocket
	if err := e.start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("e2e framework: start: %w", err), e.Close())
	}
	return e, nil
}

// freeSuffix returns a random suffix for the bridge and cgroup parent names
// that no existing link or cgroup uses, so that teardown never removes
// something that is not ours.
func freeSuffix() (string, error) {
	for range 20 {
		suffix, err := randomHex(3)
		if err != nil {
			return "", err
		}
		if linkExists(bridgePrefix+suffix) || len(cgroupDirs(cgroupPrefix+suffix)) > 0 {
			continue
		}
		return suffix, nil
	}
	return "", errors.New("no free bridge/cgroup name")
}

func (e *Env) start(ctx context.Context) error {
	if e.opts.PodSubnet != "" {
		ip, subnet, err := net.ParseCIDR(e.opts.PodSubnet)
		if err != nil || ip.To4() == nil {
			return fmt.Errorf("pod subnet %q: want an IPv4 CIDR (%v)", e.opts.PodSubnet, err)
		}
		e.PodSubnet = subnet.String()
	} else {
		subnet, err := pickPodSubnet()
		if err != nil {
			return err
		}
		e.PodSubnet = subnet
	}
	e.Snapshotter = probeSnapshotter(e.Dir)

	// Record what will exist outside Dir before anything is created, so
	// that CleanupStale can remove it if this process dies.
	if err := e.writeRecord(); err != nil {
		return err
	}
	if err := e.writeConfigs(); err != nil {
		return err
	}
	if err := e.dial(); err != nil {
		return err
	}
	if err := e.startContainerd(ctx); err != nil {
		return err
	}
	return e.importPauseImage(ctx)
}

// Address returns the path of containerd's gRPC socket (for ctr --address).
func (e *Env) Address() string { return e.layout.address }

// Close removes every container and pod (through CRI, so that NRI plugins
// see the teardown), stops the plugin processes started with StartPlugin,
// stops containerd, kills the shims of this containerd and anything left in
// the pods' cgroup parent, unmounts everything under Dir, deletes the primary
// bridge and other host-side leftovers, and removes Dir. It is safe to call
// more than once; later calls return the first result.
func (e *Env) Close() error {
	e.closeOnce.Do(func() { e.closeErr = e.close() })
	return e.closeErr
}

func (e *Env) close() error {
	e.closed.Store(true)
	var errs []error

	if e.daemon != nil && e.ContainerdPID() != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		if err := e.removeAllPods(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}

	e.mu.Lock()
	procs := e.procs
	e.mu.Unlock()
	for _, p := range procs {
		if err := p.stopGroup(); err != nil {
			errs = append(errs, err)
		}
	}

	if e.conn != nil {
		e.conn.Close()
	}
	if err := e.stopContainerd(); err != nil {
		errs = append(errs, err)
	}

	if e.opts.LogArchiveDir != "" {
		if err := e.archiveLogs(); err != nil {
			errs = append(errs, err)
		}
	}

	rec := e.record()
	e.mu.Lock()
	for id := range e.sandboxes {
		rec.SandboxIDs = append(rec.SandboxIDs, id)
	}
	e.mu.Unlock()
	if err := teardown(rec); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("e2e framework: close %s: %w", e.Dir, err)
	}
	return nil
}

// removeAllPods stops and removes every container and pod sandbox known to
// this (private) containerd, including ones a test created directly.
func (e *Env) removeAllPods(ctx context.Context) error {
	var errs []error
	ctrs, err := e.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs.GetContainers() {
		if _, err := e.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.GetId(), Timeout: 5}); err != nil {
			errs = append(errs, fmt.Errorf("stop container %s: %w", c.GetId(), err))
		}
		if _, err := e.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.GetId(), err))
		}
	}
	pods, err := e.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list pod sandboxes: %w", err))...)
	}
	for _, p := range pods.GetItems() {
		e.noteSandbox(p.GetId())
		if _, err := e.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("stop pod %s: %w", p.GetId(), err))
		}
		if _, err := e.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s: %w", p.GetId(), err))
		}
	}
	return errors.Join(errs...)
}

func (e *Env) noteSandbox(id string) {
	e.mu.Lock()
	e.sandboxes[id] = true
	e.mu.Unlock()
}

// archiveLogs copies the *.log files of Dir and of the plugin processes to
// opts.LogArchiveDir/<base name of Dir>.
func (e *Env) archiveLogs() error {
	dst := filepath.Join(e.opts.LogArchiveDir, filepath.Base(e.Dir))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("archive logs: %w", err)
	}
	var errs []error
	for _, pattern := range []string{filepath.Join(e.Dir, "*.log"), filepath.Join(e.layout.pluginLogs, "*.log")} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err == nil {
				err = os.WriteFile(filepath.Join(dst, filepath.Base(f)), data, 0o644)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("archive log %s: %w", f, err))
			}
		}
	}
	return errors.Join(errs...)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// newUID returns a random RFC 4122 version 4 UUID string.
func newUID() (string, error) {
	h, err := randomHex(16)
	if err != nil {
		return "", err
	}
	b := []byte(h)
	b[12] = '4'
	b[16] = "89ab"[b[16]%4]
	return strings.Join([]string{string(b[0:8]), string(b[8:12]), string(b[12:16]), string(b[16:20]), string(b[20:32])}, "-"), nil
}
