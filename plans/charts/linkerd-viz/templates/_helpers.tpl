{{- define "viz.created-by" -}}
linkerd.io/created-by: linkerd/helm {{ .Values.linkerdVersion }}
{{- end -}}

{{/* Labels of a viz component: (dict "root" $ "component" "tap") */}}
{{- define "viz.labels" -}}
linkerd.io/extension: viz
component: {{ .component }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Deployment labels: (dict "root" $ "component" "tap") */}}
{{- define "viz.deployment-labels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/part-of: Linkerd
app.kubernetes.io/version: {{ .root.Values.linkerdVersion }}
{{ include "viz.labels" . }}
{{- end -}}

{{/* Image of a component: (dict "root" $ "image" .Values.tap.image) */}}
{{- define "viz.image" -}}
{{- $v := .root.Values -}}
{{- printf "%s/%s:%s" (default $v.defaultRegistry .image.registry) .image.name (default $v.linkerdVersion .image.tag) -}}
{{- end -}}

{{/* The Prometheus URL the components use: prometheusUrl, else the bundled Prometheus, else none. */}}
{{- define "viz.prometheus-url" -}}
{{- if .Values.prometheusUrl -}}
{{- .Values.prometheusUrl -}}
{{- else if .Values.prometheus.enabled -}}
{{- printf "http://prometheus.%s.svc.%s:9090" .Release.Namespace .Values.clusterDomain -}}
{{- end -}}
{{- end -}}

{{/* Container resources from the upstream {cpu,memory,ephemeral-storage}.{limit,request} form. */}}
{{- define "viz.resources" -}}
{{- $limits := dict -}}
{{- $requests := dict -}}
{{- range $k := list "cpu" "memory" "ephemeral-storage" -}}
{{- with (get $ $k) -}}
{{- if .limit }}{{ $_ := set $limits $k .limit }}{{ end -}}
{{- if .request }}{{ $_ := set $requests $k .request }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if or $limits $requests -}}
resources:
  {{- with $limits }}
  limits:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $requests }}
  requests:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* Annotations of every viz pod: meshed by the proxy injector, as upstream. */}}
{{- define "viz.pod-annotations" -}}
{{ include "viz.created-by" . }}
linkerd.io/inject: enabled
config.linkerd.io/proxy-await: "enabled"
config.alpha.linkerd.io/proxy-wait-before-exit-seconds: "0"
cluster-autoscaler.kubernetes.io/safe-to-evict: "true"
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Scheduling fields: (dict "root" $ "component" "tap" "values" .Values.tap) */}}
{{- define "viz.scheduling" -}}
{{- $v := .root.Values -}}
{{- with (default $v.nodeSelector .values.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $v.tolerations .values.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.enablePodAntiAffinity }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - podAffinityTerm:
          labelSelector:
            matchExpressions:
              - key: component
                operator: In
                values:
                  - {{ .component }}
          topologyKey: topology.kubernetes.io/zone
        weight: 100
    requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector:
          matchExpressions:
            - key: component
              operator: In
              values:
                - {{ .component }}
        topologyKey: kubernetes.io/hostname
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The restricted container securityContext of the viz components. */}}
{{- define "viz.security-context" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop:
      - ALL
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  runAsUser: {{ .Values.defaultUID }}
  runAsGroup: {{ .Values.defaultGID }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/*
Serving certificate of a viz endpoint: (dict "values" .Values.tap "host" "tap.linkerd-viz.svc")
Returns JSON {crt, key, ca}; generated on every render unless crtPEM/keyPEM are set.
*/}}
{{- define "viz.webhook-tls" -}}
{{- $v := .values -}}
{{- if and $v.crtPEM $v.keyPEM -}}
{{- dict "crt" (trim $v.crtPEM) "key" (trim $v.keyPEM) "ca" (trim (default $v.crtPEM $v.caBundle)) | toJson -}}
{{- else -}}
{{- $ca := genCA (printf "%s-ca" .host) 365 -}}
{{- $cert := genSignedCert .host nil (list .host) 365 $ca -}}
{{- dict "crt" (trim $cert.Cert) "key" (trim $cert.Key) "ca" (trim (default $ca.Cert $v.caBundle)) | toJson -}}
{{- end -}}
{{- end -}}

{{- define "viz.ca-annotations" -}}
{{- if .injectCaFrom }}
cert-manager.io/inject-ca-from: {{ .injectCaFrom }}
{{- end }}
{{- if .injectCaFromSecret }}
cert-manager.io/inject-ca-from-secret: {{ .injectCaFromSecret }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget for a component when enablePodDisruptionBudget is set. */}}
{{- define "viz.pdb" -}}
{{- if .root.Values.enablePodDisruptionBudget }}
---
kind: PodDisruptionBudget
apiVersion: policy/v1
metadata:
  name: {{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "viz.labels" . | nindent 4 }}
    namespace: {{ .root.Release.Namespace }}
  annotations:
    {{- include "viz.created-by" .root | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      linkerd.io/extension: viz
      component: {{ .component }}
{{- end }}
{{- end -}}
