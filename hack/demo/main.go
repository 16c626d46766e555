// Command demo shows nri-netattach's main job on a private containerd: a
// pod with two secondary networks (macvlan and bridge), its interfaces and
// status file, and a clean teardown. Run it as root through `make demo`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nri-netattach/nri-netattach/e2e/framework"
)

func main() {
	binary := flag.String("plugin", "bin/nri-netattach", "the nri-netattach binary")
	flag.Parse()
	if err := run(*binary); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m==> %s\033[0m\n", fmt.Sprintf(format, args...))
}

func run(binary string) (err error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	binary, err = filepath.Abs(binary)
	if err != nil {
		return err
	}

	step("starting a private containerd with NRI enabled")
	env, err := framework.Start(ctx, framework.Options{})
	if err != nil {
		return err
	}
	defer func() {
		step("cleaning up: containerd, shims, mounts, links, %s", env.Dir)
		if cerr := env.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	fmt.Printf("root %s, primary network %s on bridge %s\n", env.Dir, env.PodSubnet, env.PrimaryBridge)

	// A veth end stands in for the node's second NIC (macvlan parent).
	parent := "nnademo0"
	if err := sh("ip", "link", "add", parent, "type", "veth", "peer", "name", parent+"p"); err != nil {
		return err
	}
	defer sh("ip", "link", "del", parent)
	if err := sh("ip", "link", "set", parent, "up"); err != nil {
		return err
	}
	dirs := env.NetattachDirs()
	networks := map[string]string{
		"storage": fmt.Sprintf(`{"cniVersion":"1.0.0","name":"storage","plugins":[{"type":"macvlan","master":%q,"mode":"bridge",
  "ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.1.0/24"}]]}}]}`, parent, dirs.IPAM),
		"fabric": fmt.Sprintf(`{"cniVersion":"1.0.0","name":"fabric","plugins":[{"type":"bridge","bridge":"nnademobr0",
  "ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.250.2.0/24"}]]}}]}`, dirs.IPAM),
	}
	defer sh("ip", "link", "del", "nnademobr0")
	for name, conf := range networks {
		if err := env.WriteNetwork("", name, conf); err != nil {
			return err
		}
	}

	step("starting nri-netattach (external mode) against %s", env.NRISocket)
	plugin, err := env.StartNetattach(ctx, framework.Netattach{Binary: binary})
	if err != nil {
		return err
	}
	defer plugin.Stop()

	annotation := "storage, fabric@fab0"
	step("RunPodSandbox: pod demo/web with k8s.v1.cni.cncf.io/networks: %q", annotation)
	spec := framework.PodSpec{Name: "web", Namespace: "demo",
		Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": annotation}}
	t0 := time.Now()
	id, err := env.RunPod(ctx, spec)
	if err != nil {
		return err
	}
	fmt.Printf("sandbox %.12s ready in %s\n", id, time.Since(t0).Round(time.Millisecond))
	// The default attach mode is pipelined: the networks are attached in
	// the background, and the container does not start before they are.
	step("CreateContainer + StartContainer: the wait-attached hook holds it until the networks are attached")
	cid, err := env.CreateContainer(ctx, id, spec, "app")
	if err == nil {
		err = env.StartContainer(ctx, cid)
	}
	if err != nil {
		return err
	}
	fmt.Printf("container %.12s started %s after RunPodSandbox\n", cid, time.Since(t0).Round(time.Millisecond))
	netns, err := env.PodNetNS(ctx, id)
	if err != nil {
		return err
	}

	step("ip addr inside the pod (eth0 from containerd's CNI, net1 and fab0 from nri-netattach)")
	if err := shOut("nsenter", "--net="+netns, "ip", "addr"); err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(dirs.Status, "*.json"))
	for _, f := range files {
		step("status file %s (Multus network-status format)", f)
		data, _ := os.ReadFile(f)
		fmt.Print(string(data))
	}
	step("nri-netattach status")
	if err := shOut(binary, "status", "--config", dirs.ConfigFile); err != nil {
		return err
	}

	step("StopPodSandbox + RemovePodSandbox")
	if err := env.StopPod(ctx, id); err != nil {
		return err
	}
	if err := env.RemovePod(ctx, id); err != nil {
		return err
	}
	left, _ := filepath.Glob(filepath.Join(dirs.IPAM, "*", "10.*"))
	records, _ := filepath.Glob(filepath.Join(dirs.State, "sandboxes", "*.json"))
	files, _ = filepath.Glob(filepath.Join(dirs.Status, "*.json"))
	fmt.Printf("host-local IPs still allocated: %d, records: %d, status files: %d\n", len(left), len(records), len(files))
	if len(left)+len(records)+len(files) > 0 {
		return fmt.Errorf("teardown left something behind")
	}
	step("plugin log")
	for _, line := range strings.Split(plugin.Logs(), "\n") {
		if strings.Contains(line, "pod=") || strings.Contains(line, "configured") {
			fmt.Println(line)
		}
	}
	fmt.Printf("\ndemo done in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func shOut(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}
