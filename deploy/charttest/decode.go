package charttest

import (
	"errors"
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// ErrDecode is wrapped by every error of a Decoder.
var ErrDecode = errors.New("charttest: decode")

// Object is a decoded manifest document.
type Object struct {
	Document
	// GVK is the object's group, version and kind.
	GVK schema.GroupVersionKind
	// Obj is the typed object (*appsv1.Deployment, *corev1.Secret, …).
	Obj runtime.Object
}

// Decoder decodes Kubernetes objects strictly: a field the type does not
// have, a duplicate field or a kind the scheme does not know is an error.
type Decoder struct {
	dec runtime.Decoder
}

// NewDecoder returns a strict decoder over client-go's scheme (every
// built-in API group) plus monitoring.coreos.com/v1, for the chart's
// optional ServiceMonitor.
func NewDecoder() (*Decoder, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("%w: scheme: %w", ErrDecode, err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("%w: scheme: %w", ErrDecode, err)
	}
	cf := serializer.NewCodecFactory(s, serializer.EnableStrict)
	return &Decoder{dec: cf.UniversalDeserializer()}, nil
}

// Decode decodes one YAML or JSON document.
func (d *Decoder) Decode(doc []byte) (runtime.Object, schema.GroupVersionKind, error) {
	obj, gvk, err := d.dec.Decode(doc, nil, nil)
	if err != nil {
		return nil, schema.GroupVersionKind{}, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return obj, *gvk, nil
}

// DecodeManifest decodes every document of a rendered manifest.
func (d *Decoder) DecodeManifest(manifest string) ([]Object, error) {
	docs := SplitManifest(manifest)
	objs := make([]Object, 0, len(docs))
	for _, doc := range docs {
		obj, gvk, err := d.Decode([]byte(doc.YAML))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", doc.Source, err)
		}
		objs = append(objs, Object{Document: doc, GVK: gvk, Obj: obj})
	}
	return objs, nil
}
