package plugin

import (
	"testing"

	"github.com/containerd/nri/pkg/api"
)

func TestLaunchedByRuntime(t *testing.T) {
	t.Setenv(api.PluginSocketEnvVar, "")
	if LaunchedByRuntime() {
		t.Error("launched by the runtime without its socket in the environment")
	}
	t.Setenv(api.PluginSocketEnvVar, "3")
	if !LaunchedByRuntime() {
		t.Errorf("not launched by the runtime with %s set", api.PluginSocketEnvVar)
	}
}
