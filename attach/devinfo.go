package attach

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// deviceInfoCapability is the capability argument that tells a CNI plugin
// where to read and write the device-info of its device, as Multus passes
// it to plugins of device networks.
const deviceInfoCapability = "CNIDeviceInfoFile"

// deviceInfoFile is the CNI device-info file of one attachment, named as
// Multus names it: DIR/cni/NETWORK-SANDBOX_IFNAME, '/' replaced by '-'.
func deviceInfoFile(dir, network, sandboxID, ifname string) string {
	return filepath.Join(dir, "cni", strings.ReplaceAll(network+"-"+sandboxID+"_"+ifname, "/", "-"))
}

// devicePluginInfoFile is the file a device plugin writes for a device it
// allocated (the device-info specification fixes the name):
// DIR/dp/RESOURCE-DEVICE-device.json, '/' replaced by '-'.
func devicePluginInfoFile(dir, resource, deviceID string) string {
	return filepath.Join(dir, "dp", strings.ReplaceAll(resource, "/", "-")+"-"+strings.ReplaceAll(deviceID, "/", "-")+"-device.json")
}

// copyDevicePluginInfo hands the device plugin's device-info to the CNI
// plugin before ADD (the CNI plugin may complete it): copied to the CNI
// file unless that exists already. A device plugin that writes none is
// the common case, not an error.
func copyDevicePluginInfo(dir, resource, deviceID, cniFile string) error {
	data, err := os.ReadFile(devicePluginInfoFile(dir, resource, deviceID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := os.Stat(cniFile); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(cniFile), 0o755); err != nil {
		return err
	}
	return os.WriteFile(cniFile, data, 0o444)
}

// loadDeviceInfo reads the device-info the CNI plugin left (or that was
// copied from the device plugin), for the status file; nil when there is
// none.
func loadDeviceInfo(cniFile string) (*DeviceInfo, error) {
	data, err := os.ReadFile(cniFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d DeviceInfo
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("device-info %s: %w", cniFile, err)
	}
	return &d, nil
}

// removeDeviceInfo deletes an attachment's CNI device-info file after its
// DEL; only a file inside dir/cni is ever removed.
func removeDeviceInfo(dir string, a *Attachment) error {
	f, _ := a.CapabilityArgs[deviceInfoCapability].(string)
	if f == "" || filepath.Dir(f) != filepath.Join(dir, "cni") {
		return nil
	}
	if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
