package framework

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-netattach/nri-netattach/internal/atomicfile"
)

const (
	// PauseImageName is the repository of the locally built pause image.
	PauseImageName = "localhost/nri-netattach/pause"
	// PauseImageTag is its tag.
	PauseImageTag = "e2e"
	// PauseImage is the full reference containerd knows the image by. It is
	// the pinned sandbox image and the image CreateContainer uses.
	PauseImage = PauseImageName + ":" + PauseImageTag

	// annotationImageName is containerd's full-reference annotation on an
	// index entry; ctr import uses it when it matches --base-name.
	annotationImageName = "io.containerd.image.name"

	// criNamespace is the containerd namespace the CRI plugin uses.
	criNamespace = "k8s.io"
)

// epoch is the fixed timestamp of the image, so that the same pause binary
// always yields the same image digest.
var epoch = time.Unix(0, 0).UTC()

// WritePauseImage writes an OCI image-layout archive (a tar of oci-layout,
// index.json and blobs/sha256/...) to out. The image has a single gzip layer
// holding pauseBinary as /pause, Entrypoint ["/pause"], the platform of this
// process, and the index entry is annotated so that `ctr images import
// --base-name PauseImageName` names it PauseImage. The output is
// deterministic for a given binary; it is written atomically.
func WritePauseImage(pauseBinary, out string) error {
	bin, err := os.ReadFile(pauseBinary)
	if err != nil {
		return fmt.Errorf("read pause binary: %w", err)
	}

	layerTar, err := tarFiles([]tarEntry{{name: "pause", data: bin, mode: 0o755}})
	if err != nil {
		return fmt.Errorf("build layer tar: %w", err)
	}
	layerGz, err := gzipBytes(layerTar)
	if err != nil {
		return fmt.Errorf("compress layer: %w", err)
	}

	created := epoch
	config := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config: ocispec.ImageConfig{
			Entrypoint: []string{"/pause"},
			StopSignal: "SIGTERM",
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layerTar)}},
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return fmt.Errorf("marshal image config: %w", err)
	}

	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    descriptorOf(ocispec.MediaTypeImageConfig, configJSON),
		Layers:    []ocispec.Descriptor{descriptorOf(ocispec.MediaTypeImageLayerGzip, layerGz)},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return fmt.Errorf("marshal manifest: %w", err)
	}

	manifestDesc := descriptorOf(ocispec.MediaTypeImageManifest, manifestJSON)
	manifestDesc.Platform = &config.Platform
	manifestDesc.Annotations = map[string]string{
		annotationImageName:       PauseImage,
		ocispec.AnnotationRefName: PauseImageTag,
	}
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("marshal index: %w", err)
	}
	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return fmt.Errorf("marshal oci-layout: %w", err)
	}

	entries := []tarEntry{
		{name: ocispec.ImageLayoutFile, data: layoutJSON, mode: 0o644},
		{name: ocispec.ImageIndexFile, data: indexJSON, mode: 0o644},
	}
	for _, blob := range [][]byte{layerGz, configJSON, manifestJSON} {
		entries = append(entries, tarEntry{name: blobPath(digest.FromBytes(blob)), data: blob, mode: 0o644})
	}
	archive, err := tarFiles(entries)
	if err != nil {
		return fmt.Errorf("build archive: %w", err)
	}
	return writeFileAtomic(out, archive)
}

func descriptorOf(mediaType string, blob []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(blob), Size: int64(len(blob))}
}

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// tarEntry is a regular file for tarFiles.
type tarEntry struct {
	name string
	data []byte
	mode int64
}

// tarFiles builds a tar of regular files (and their parent directories) in
// name order with root ownership and fixed timestamps.
func tarFiles(entries []tarEntry) ([]byte, error) {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b tarEntry) int { return strings.Compare(a.name, b.name) })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range entries {
		for _, dir := range parentDirs(f.name) {
			if dirs[dir] {
				continue
			}
			dirs[dir] = true
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// parentDirs returns "a", "a/b" for "a/b/c".
func parentDirs(name string) []string {
	var dirs []string
	for i := range len(name) {
		if name[i] == '/' {
			dirs = append(dirs, name[:i])
		}
	}
	return dirs
}

func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.ModTime = epoch
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFileAtomic(path string, data []byte) error {
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// pauseArchive returns an up-to-date pause image archive: the one
// hack/e2e-deps.sh wrote into the binary directory, or a fresh one in Dir.
func (e *Env) pauseArchive() (string, error) {
	pauseBin := filepath.Join(e.BinDir, "pause")
	prebuilt := filepath.Join(e.BinDir, PauseImageArchive)
	binSt, err := os.Stat(pauseBin)
	if err != nil {
		return "", fmt.Errorf("pause binary: %w", err)
	}
	if st, err := os.Stat(prebuilt); err == nil && !st.ModTime().Before(binSt.ModTime()) {
		return prebuilt, nil
	}
	out := filepath.Join(e.Dir, PauseImageArchive)
	if err := WritePauseImage(pauseBin, out); err != nil {
		return "", fmt.Errorf("write pause image: %w", err)
	}
	return out, nil
}

// importPauseImage imports the pause image with ctr into the CRI namespace,
// unpacked for the configured snapshotter, and waits until CRI reports it.
func (e *Env) importPauseImage(ctx context.Context) error {
	archive, err := e.pauseArchive()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(e.BinDir, "ctr"),
		"--address", e.layout.address, "--namespace", criNamespace,
		"images", "import", "--base-name", PauseImageName, "--snapshotter", e.Snapshotter, archive)
	cmd.Env = e.childEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr images import %s: %w: %s", archive, err, strings.TrimSpace(string(out)))
	}

	// The CRI image store learns about the new image asynchronously.
	err = poll(ctx, 20*time.Millisecond, func() (bool, error) {
		resp, err := e.Image.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: PauseImage}})
		if err != nil {
			return false, fmt.Errorf("CRI ImageStatus %s: %w", PauseImage, err)
		}
		return resp.GetImage() != nil, nil
	})
	if err != nil {
		return fmt.Errorf("wait for imported image %s in CRI: %w", PauseImage, err)
	}
	return nil
}
