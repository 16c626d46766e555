// Package framework is the end-to-end test harness for nri-netattach.
//
// It runs a private containerd (v2.x, built by hack/e2e-deps.sh) with NRI
// enabled, a primary bridge CNI network and a locally built pause image, and
// drives it over CRI the way the kubelet would: tests run pods, inspect their
// network namespaces and start the nri-netattach plugin (or a stand-in) as an
// external NRI plugin.
//
// Everything an Env creates lives under its private temporary directory
// (Env.Dir) or is otherwise recorded there (the primary bridge, the pods'
// cgroup parent), so Env.Close, or a later Start after a crashed test binary,
// can remove it. The package does not depend on the testing package: the same
// API serves tests and plain programs.
//
// Requirements: root, a kernel with network namespaces, veth and bridge
// support, and the binaries from hack/e2e-deps.sh (see CheckBinaries).
package framework
