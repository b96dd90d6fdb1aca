{{/* Metadata shared by the Linkerd CRDs. */}}
{{- define "linkerd-crds.metadata" -}}
annotations:
  linkerd.io/created-by: linkerd/helm {{ .Chart.AppVersion }}
  {{- with .Values.commonAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
labels:
  helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
  linkerd.io/control-plane-ns: {{ .Release.Namespace }}
  {{- with .Values.commonLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Metadata of the Gateway API CRDs Linkerd ships; *.k8s.io groups need api-approved. */}}
{{- define "linkerd-crds.gateway-metadata" -}}
annotations:
  api-approved.kubernetes.io: https://github.com/kubernetes-sigs/gateway-api/pull/2997
  gateway.networking.k8s.io/bundle-version: v1.1.1
  gateway.networking.k8s.io/channel: experimental
  linkerd.io/created-by: linkerd/helm {{ .Chart.AppVersion }}
  {{- with .Values.commonAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
labels:
  helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
  linkerd.io/control-plane-ns: {{ .Release.Namespace }}
  {{- with .Values.commonLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* A Kubernetes-style status.conditions list. */}}
{{- define "linkerd-crds.conditions" -}}
conditions:
  type: array
  items:
    type: object
    required:
      - status
      - type
    properties:
      lastTransitionTime:
        type: string
        format: date-time
      message:
        type: string
      observedGeneration:
        type: integer
        format: int64
      reason:
        type: string
      status:
        type: string
        enum:
          - "True"
          - "False"
          - Unknown
      type:
        type: string
  x-kubernetes-list-map-keys:
    - type
  x-kubernetes-list-type: map
{{- end -}}

{{/* A label selector (matchLabels / matchExpressions). */}}
{{- define "linkerd-crds.selector" -}}
type: object
properties:
  matchExpressions:
    type: array
    items:
      type: object
      required:
        - key
        - operator
      properties:
        key:
          type: string
        operator:
          type: string
          enum:
            - In
            - NotIn
            - Exists
            - DoesNotExist
        values:
          type: array
          items:
            type: string
  matchLabels:
    type: object
    additionalProperties:
      type: string
x-kubernetes-map-type: atomic
{{- end -}}

{{/* A policy target or authentication reference. */}}
{{- define "linkerd-crds.policyRef" -}}
type: object
required:
  - kind
properties:
  group:
    type: string
    maxLength: 253
  kind:
    type: string
    maxLength: 63
    minLength: 1
  name:
    type: string
    maxLength: 253
  namespace:
    type: string
    maxLength: 63
{{- end -}}

{{/* Top-level schema of a kind whose spec and status are kept as written. */}}
{{- define "linkerd-crds.opaque-schema" -}}
openAPIV3Schema:
  type: object
  properties:
    apiVersion:
      type: string
    kind:
      type: string
    metadata:
      type: object
    spec:
      type: object
      x-kubernetes-preserve-unknown-fields: true
    status:
      type: object
      x-kubernetes-preserve-unknown-fields: true
{{- end -}}
