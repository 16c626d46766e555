package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nri-netattach/nri-netattach/config"
	"github.com/nri-netattach/nri-netattach/metrics"
	"github.com/nri-netattach/nri-netattach/plugin"
)

// DefaultSocket is containerd's default NRI socket.
const DefaultSocket = "/var/run/nri/nri.sock"

const (
	// preinstalledLog is where a plugin launched by the runtime logs.
	preinstalledLog = "/var/log/nri-netattach.log"
	defaultPath     = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

func runCmd(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var (
		cfgPath   = fs.String("config", "", "configuration file (YAML or JSON); default: the runtime's, else built-in defaults")
		socket    = fs.String("socket", DefaultSocket, "the runtime's NRI socket")
		name      = fs.String("plugin-name", "netattach", "plugin name to register with")
		idx       = fs.String("plugin-idx", "10", "plugin index (order among NRI plugins)")
		logLevel  = fs.String("log-level", "info", "log level: debug, info, warn, error")
		logFormat = fs.String("log-format", "text", "log format: text or json")
		resync    = fs.Duration("resync-interval", 5*time.Second, "how often to check that recorded pod network namespaces still exist")
		metricsAt = fs.String("metrics-address", "", "serve Prometheus /metrics and /healthz on this address (e.g. :9654); off when empty")
		logFile   = fs.String("log-file", "", "append logs to this file instead of stderr (default when launched by the runtime: "+preinstalledLog+")")
	)
	kf := addKubeFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	launched := plugin.LaunchedByRuntime()
	if launched {
		// The runtime starts pre-installed plugins with only the NRI
		// variables: no PATH (CNI plugins look up iptables and the like), and
		// their output goes nowhere.
		if os.Getenv("PATH") == "" {
			os.Setenv("PATH", defaultPath)
		}
		if *logFile == "" {
			*logFile = preinstalledLog
		}
	}
	log, err := newLogger(*logLevel, *logFormat, *logFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nri-netattach:", err)
		return 2
	}
	// Without --config the runtime's configuration (Configure) is used, not
	// the built-in defaults: cfg stays nil.
	var cfg *config.Config
	if *cfgPath != "" {
		if cfg, err = loadConfig(*cfgPath); err != nil {
			log.WithError(err).Error("invalid configuration")
			return 1
		}
	}
	cfg, k, err := kf.setup(cfg, log)
	if err != nil {
		log.WithError(err).Error("invalid Kubernetes mode configuration")
		return 1
	}
	opts := plugin.Options{Config: cfg, Name: *name, Index: *idx, Socket: *socket, ResyncInterval: *resync, Log: log}
	if k != nil {
		wire(&opts, k)
	}
	// SIGTERM and SIGINT stop it gracefully: the attaches in flight finish
	// or roll back first (see plugin.Run). SIGHUP, which a closed terminal
	// or a careless "reload" sends, must not kill a node's networking.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			log.Info("SIGHUP ignored: nothing to reload (network definitions are read when a pod needs them)")
		}
	}()
	if k != nil {
		kubeDone := make(chan struct{})
		go func() { defer close(kubeDone); k.Run(ctx) }()
		defer func() { stop(); <-kubeDone }()
	}
	if *metricsAt != "" {
		opts.Metrics = metrics.New()
		if k != nil {
			if err := opts.Metrics.Register(k.Collectors()...); err != nil {
				log.WithError(err).Error("cannot start")
				return 1
			}
		}
		go func() {
			if err := opts.Metrics.Serve(ctx, *metricsAt); err != nil {
				log.WithError(err).Error("metrics server stopped")
			}
		}()
	}
	if launched {
		// The runtime passes the connection, name and index itself.
		opts.Socket, opts.Name, opts.Index = "", "", ""
	}
	fields := logrus.Fields{"version": version, "socket": opts.Socket, "name": *name, "idx": *idx,
		"config": *cfgPath, "logLevel": *logLevel, "logFormat": *logFormat, "resyncInterval": *resync,
		"metricsAddress": *metricsAt, "kubernetes": k != nil}
	log.WithFields(fields).Info("starting nri-netattach")

	p, err := plugin.New(opts)
	if err != nil {
		log.WithError(err).Error("cannot start")
		return 1
	}
	if err := p.Run(ctx); err != nil {
		log.WithError(err).Error("stopped")
		return 1
	}
	log.Info("stopped: every attach finished or rolled back")
	return 0
}

func newLogger(level, format, file string) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	if file != "" {
		f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("--log-file: %w", err)
		}
		l.SetOutput(f)
	}
	lv, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	l.SetLevel(lv)
	switch format {
	case "text":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
	}
	return l, nil
}
