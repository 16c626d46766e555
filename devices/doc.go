// Package devices gives the attachments whose network names a device-plugin
// resource ("resourceName", config.Network.Resource) the devices the kubelet
// allocated to the pod for that resource, as Multus does for SR-IOV: it reads
// the allocation from the kubelet's PodResources gRPC API and sets each such
// attachment's DeviceID (the CNI deviceID capability argument).
//
// # Why the allocation already exists at RunPodSandbox
//
// The kubelet allocates device-plugin devices when it admits a pod, not when
// it starts a container: its topology manager's admit handler calls the
// device manager's Allocate for every container of the pod (init containers
// included) from HandlePodAdditions, before the pod worker's SyncPod creates
// the sandbox with CRI RunPodSandbox, inside which the runtime calls NRI
// RunPodSandbox. A pod whose devices cannot be allocated is rejected at
// admission (UnexpectedAdmissionError) and never gets a sandbox. The
// allocation is checkpointed (kubelet_internal_checkpoint), so a kubelet
// restart between admission and sandbox creation keeps it. Multus relies on
// the same ordering: its CNI ADD, which reads PodResources, also runs inside
// RunPodSandbox. So a pod that asks for a resource but has no allocation
// when the sandbox is created is a configuration error (no container
// requests the resource), not a race, and failing the sandbox is right.
//
// # What the kubelet reports
//
// PodResources reports devices per container, for the app containers and the
// restartable init containers (sidecars); devices requested only by a
// regular init container are not reported (the device manager hands them on
// to the app containers). Every container's devices of a resource are
// gathered into one list. The kubelet builds that list from maps, in no
// particular order, so the IDs are sorted: the same pod gets the same device
// for the same network on every call (a kubelet retry, a resync).
//
// Get (GetPodResources) asks for one pod; kubelets before 1.27, or without
// the KubeletPodResourcesGet feature gate (beta, on by default since 1.34),
// do not serve it, and the client falls back to List (every active pod of
// the node), remembering that for its lifetime.
package devices
