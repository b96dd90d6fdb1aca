{{- define "linkerd.created-by" -}}
linkerd.io/created-by: linkerd/helm {{ .Values.linkerdVersion }}
{{- end -}}

{{/* The trust domain: identityTrustDomain, or clusterDomain when empty. */}}
{{- define "linkerd.trust-domain" -}}
{{- default .Values.clusterDomain .Values.identityTrustDomain -}}
{{- end -}}

{{/* The trust anchors; rendering fails with the upstream message when they are missing. */}}
{{- define "linkerd.trust-anchors" -}}
{{- required "Please provide the identity trust anchors" .Values.identityTrustAnchorsPEM | trim -}}
{{- end -}}

{{/* Labels of a control plane component: (dict "root" $ "component" "identity") */}}
{{- define "linkerd.labels" -}}
linkerd.io/control-plane-component: {{ .component }}
linkerd.io/control-plane-ns: {{ .root.Release.Namespace }}
{{- end -}}

{{/* Container resources from the upstream {cpu,memory,ephemeral-storage}.{limit,request} form. */}}
{{- define "linkerd.resources" -}}
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

{{/* Resources of a component over defaults; only non-empty fields override: (list overrides defaults) */}}
{{- define "linkerd.merged-resources" -}}
{{- $r := deepCopy (default dict (index . 1)) -}}
{{- range $k, $fields := (default dict (index . 0)) -}}
{{- range $f, $val := $fields -}}
{{- if $val -}}
{{- $cur := default dict (get $r $k) -}}
{{- $_ := set $cur $f $val -}}
{{- $_ := set $r $k $cur -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- include "linkerd.resources" $r -}}
{{- end -}}

{{/* Pod annotations every meshed control plane pod carries. */}}
{{- define "linkerd.proxy-annotations" -}}
linkerd.io/proxy-version: {{ default .Values.linkerdVersion .Values.proxy.image.version }}
cluster-autoscaler.kubernetes.io/safe-to-evict: "true"
linkerd.io/trust-root-sha256: {{ include "linkerd.trust-anchors" . | sha256sum }}
{{- end -}}

{{/* Pod-spec scheduling fields shared by the control plane: (dict "root" $ "component" "identity") */}}
{{- define "linkerd.scheduling" -}}
{{- $root := .root -}}
{{- with $root.Values.runtimeClassName }}
runtimeClassName: {{ . | quote }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $root.Values.enablePodAntiAffinity }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - podAffinityTerm:
          labelSelector:
            matchExpressions:
              - key: linkerd.io/control-plane-component
                operator: In
                values:
                  - {{ .component }}
          topologyKey: topology.kubernetes.io/zone
        weight: 100
    requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector:
          matchExpressions:
            - key: linkerd.io/control-plane-component
              operator: In
              values:
                - {{ .component }}
        topologyKey: kubernetes.io/hostname
{{- end }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/*
The linkerd-proxy sidecar container, as the proxy injector would add it.
(dict "root" $ "component" "linkerd-identity" "inboundPorts" "8080,9990" "await" false
      "resources" {...} "requireTLS" "8080")
*/}}
{{- define "linkerd.proxy" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $ns := $root.Release.Namespace -}}
{{- $cd := $v.clusterDomain -}}
{{- $td := include "linkerd.trust-domain" $root -}}
- name: linkerd-proxy
  image: {{ $v.proxy.image.name }}:{{ default $v.linkerdVersion $v.proxy.image.version }}
  imagePullPolicy: {{ default $v.imagePullPolicy $v.proxy.image.pullPolicy }}
  env:
    - name: _pod_name
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: _pod_ns
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: _pod_nodeName
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    - name: LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED
      value: "false"
    - name: LINKERD2_PROXY_LOG
      value: {{ $v.proxy.logLevel | quote }}
    - name: LINKERD2_PROXY_LOG_FORMAT
      value: {{ $v.proxy.logFormat | quote }}
    - name: LINKERD2_PROXY_DESTINATION_SVC_ADDR
      value: {{ ternary "localhost.:8086" (printf "linkerd-dst-headless.%s.svc.%s.:8086" $ns $cd) (eq .component "linkerd-destination") }}
    - name: LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS
      value: {{ $v.clusterNetworks | quote }}
    - name: LINKERD2_PROXY_POLICY_SVC_ADDR
      value: {{ ternary "localhost.:8090" (printf "linkerd-policy.%s.svc.%s.:8090" $ns $cd) (eq .component "linkerd-destination") }}
    - name: LINKERD2_PROXY_POLICY_WORKLOAD
      value: |
        {"ns":"$(_pod_ns)", "pod":"$(_pod_name)"}
    - name: LINKERD2_PROXY_INBOUND_DEFAULT_POLICY
      value: {{ default $v.proxy.defaultInboundPolicy .defaultInboundPolicy }}
    - name: LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS
      value: {{ $v.clusterNetworks | quote }}
    - name: LINKERD2_PROXY_CONTROL_STREAM_INITIAL_TIMEOUT
      value: 3s
    - name: LINKERD2_PROXY_CONTROL_STREAM_IDLE_TIMEOUT
      value: 5m
    - name: LINKERD2_PROXY_CONTROL_STREAM_LIFETIME
      value: 1h
    - name: LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT
      value: {{ $v.proxy.inboundConnectTimeout }}
    - name: LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT
      value: {{ $v.proxy.outboundConnectTimeout }}
    - name: LINKERD2_PROXY_CONTROL_LISTEN_ADDR
      value: "[::]:{{ $v.proxy.ports.control }}"
    - name: LINKERD2_PROXY_ADMIN_LISTEN_ADDR
      value: "[::]:{{ $v.proxy.ports.admin }}"
    - name: LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR
      value: "127.0.0.1:{{ $v.proxy.ports.outbound }}"
    - name: LINKERD2_PROXY_INBOUND_LISTEN_ADDR
      value: "[::]:{{ $v.proxy.ports.inbound }}"
    - name: LINKERD2_PROXY_INBOUND_IPS
      valueFrom:
        fieldRef:
          fieldPath: status.podIPs
    - name: LINKERD2_PROXY_INBOUND_PORTS
      value: {{ .inboundPorts | quote }}
    {{- with .requireTLS }}
    - name: LINKERD2_PROXY_INBOUND_PORTS_REQUIRE_TLS
      value: {{ . | quote }}
    {{- end }}
    - name: LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES
      value: {{ ternary "." (printf "svc.%s." $cd) $v.proxy.enableExternalProfiles }}
    - name: LINKERD2_PROXY_INBOUND_ACCEPT_KEEPALIVE
      value: 10000ms
    - name: LINKERD2_PROXY_OUTBOUND_CONNECT_KEEPALIVE
      value: 10000ms
    - name: LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION
      value: {{ $v.proxy.opaquePorts | quote }}
    - name: LINKERD2_PROXY_DESTINATION_CONTEXT
      value: |
        {"ns":"$(_pod_ns)", "nodeName":"$(_pod_nodeName)", "pod":"$(_pod_name)"}
    - name: _pod_sa
      valueFrom:
        fieldRef:
          fieldPath: spec.serviceAccountName
    - name: _l5d_ns
      value: {{ $ns }}
    - name: _l5d_trustdomain
      value: {{ $td }}
    - name: LINKERD2_PROXY_IDENTITY_DIR
      value: /var/run/linkerd/identity/end-entity
    - name: LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS
      value: |
        {{- include "linkerd.trust-anchors" $root | nindent 8 }}
    - name: LINKERD2_PROXY_IDENTITY_TOKEN_FILE
      value: {{ ternary "/var/run/secrets/tokens/linkerd-identity-token" "/var/run/secrets/kubernetes.io/serviceaccount/token" $v.identity.serviceAccountTokenProjection }}
    - name: LINKERD2_PROXY_IDENTITY_SVC_ADDR
      value: {{ ternary "localhost.:8080" (printf "linkerd-identity-headless.%s.svc.%s.:8080" $ns $cd) (eq .component "linkerd-identity") }}
    - name: LINKERD2_PROXY_IDENTITY_LOCAL_NAME
      value: $(_pod_sa).$(_pod_ns).serviceaccount.identity.{{ $ns }}.{{ $td }}
    - name: LINKERD2_PROXY_IDENTITY_SVC_NAME
      value: linkerd-identity.{{ $ns }}.serviceaccount.identity.{{ $ns }}.{{ $td }}
    - name: LINKERD2_PROXY_DESTINATION_SVC_NAME
      value: linkerd-destination.{{ $ns }}.serviceaccount.identity.{{ $ns }}.{{ $td }}
    - name: LINKERD2_PROXY_POLICY_SVC_NAME
      value: linkerd-destination.{{ $ns }}.serviceaccount.identity.{{ $ns }}.{{ $td }}
    {{- if $v.proxy.disableTap }}
    - name: LINKERD2_PROXY_TAP_DISABLED
      value: "true"
    {{- end }}
  livenessProbe:
    httpGet:
      path: /live
      port: {{ $v.proxy.ports.admin }}
    initialDelaySeconds: 10
    timeoutSeconds: 1
  {{- if .await }}
  lifecycle:
    postStart:
      exec:
        command:
          - /usr/lib/linkerd/linkerd-await
          - --timeout=2m
          - --port={{ $v.proxy.ports.admin }}
  {{- end }}
  ports:
    - containerPort: {{ $v.proxy.ports.inbound }}
      name: linkerd-proxy
    - containerPort: {{ $v.proxy.ports.admin }}
      name: linkerd-admin
  readinessProbe:
    httpGet:
      path: /ready
      port: {{ $v.proxy.ports.admin }}
    initialDelaySeconds: 2
    timeoutSeconds: 1
  {{- with (include "linkerd.merged-resources" (list .resources $v.proxy.resources) | trim) }}{{ . | nindent 2 }}{{- end }}
  securityContext:
    allowPrivilegeEscalation: false
    capabilities:
      drop:
        - ALL
    readOnlyRootFilesystem: true
    runAsNonRoot: true
    runAsUser: {{ $v.proxy.uid }}
    {{- if ge (int $v.proxy.gid) 0 }}
    runAsGroup: {{ $v.proxy.gid }}
    {{- end }}
    seccompProfile:
      type: RuntimeDefault
  terminationMessagePolicy: FallbackToLogsOnError
  volumeMounts:
    - mountPath: /var/run/linkerd/identity/end-entity
      name: linkerd-identity-end-entity
    {{- if $v.identity.serviceAccountTokenProjection }}
    - mountPath: /var/run/secrets/tokens
      name: linkerd-identity-token
    {{- end }}
{{- end -}}

{{/* The linkerd-init container: (dict "root" $ "ignoreOutboundPorts" "443,6443") */}}
{{- define "linkerd.proxy-init" -}}
{{- $v := .root.Values -}}
- name: linkerd-init
  image: {{ $v.proxyInit.image.name }}:{{ $v.proxyInit.image.version }}
  imagePullPolicy: {{ default $v.imagePullPolicy $v.proxyInit.image.pullPolicy }}
  args:
    {{- if eq $v.proxyInit.iptablesMode "nft" }}
    - --firewall-bin-path
    - iptables-nft
    - --firewall-save-bin-path
    - iptables-nft-save
    {{- else }}
    - --firewall-bin-path
    - iptables-legacy
    - --firewall-save-bin-path
    - iptables-legacy-save
    {{- end }}
    - --incoming-proxy-port
    - {{ $v.proxy.ports.inbound | quote }}
    - --outgoing-proxy-port
    - {{ $v.proxy.ports.outbound | quote }}
    - --proxy-uid
    - {{ $v.proxy.uid | quote }}
    - --inbound-ports-to-ignore
    - "{{ $v.proxy.ports.control }},{{ $v.proxy.ports.admin }}{{ with $v.proxyInit.ignoreInboundPorts }},{{ . }}{{ end }}"
    - --outbound-ports-to-ignore
    - {{ default $v.proxyInit.ignoreOutboundPorts .ignoreOutboundPorts | quote }}
    {{- with $v.proxyInit.skipSubnets }}
    - --subnets-to-ignore
    - {{ . | quote }}
    {{- end }}
    {{- with $v.proxyInit.logLevel }}
    - --log-level
    - {{ . }}
    {{- end }}
    {{- with $v.proxyInit.logFormat }}
    - --log-format
    - {{ . }}
    {{- end }}
  {{- include "linkerd.resources" $v.proxyInit.resources | nindent 2 }}
  securityContext:
    allowPrivilegeEscalation: {{ $v.proxyInit.privileged }}
    capabilities:
      add:
        - NET_ADMIN
        - NET_RAW
    privileged: {{ $v.proxyInit.privileged }}
    readOnlyRootFilesystem: true
    runAsNonRoot: {{ not $v.proxyInit.runAsRoot }}
    runAsUser: {{ ternary 0 $v.proxyInit.runAsUser $v.proxyInit.runAsRoot }}
    runAsGroup: {{ ternary 0 $v.proxyInit.runAsGroup $v.proxyInit.runAsRoot }}
    seccompProfile:
      type: RuntimeDefault
  terminationMessagePolicy: FallbackToLogsOnError
  volumeMounts:
    - mountPath: {{ $v.proxyInit.xtMountPath.mountPath }}
      name: {{ $v.proxyInit.xtMountPath.name }}
{{- end -}}

{{/* Pod volumes of the proxy and proxy-init containers. */}}
{{- define "linkerd.proxy-volumes" -}}
{{- if not .Values.cniEnabled }}
- emptyDir: {}
  name: {{ .Values.proxyInit.xtMountPath.name }}
{{- end }}
{{- if .Values.identity.serviceAccountTokenProjection }}
- name: linkerd-identity-token
  projected:
    sources:
      - serviceAccountToken:
          audience: identity.l5d.io
          expirationSeconds: 86400
          path: linkerd-identity-token
{{- end }}
- emptyDir:
    medium: Memory
  name: linkerd-identity-end-entity
{{- end -}}

{{/*
Serving certificate of a webhook: (dict "values" .Values.proxyInjector "host" "linkerd-proxy-injector.linkerd.svc")
Returns JSON {crt, key, ca}. Without crtPEM/keyPEM in values, a fresh CA and a certificate
signed by it are generated on every render, as in the upstream chart.
*/}}
{{- define "linkerd.webhook-tls" -}}
{{- $v := .values -}}
{{- if and $v.crtPEM $v.keyPEM -}}
{{- dict "crt" (trim $v.crtPEM) "key" (trim $v.keyPEM) "ca" (trim (default $v.crtPEM $v.caBundle)) | toJson -}}
{{- else -}}
{{- $ca := genCA (printf "%s-ca" .host) 365 -}}
{{- $cert := genSignedCert .host nil (list .host) 365 $ca -}}
{{- dict "crt" (trim $cert.Cert) "key" (trim $cert.Key) "ca" (trim (default $ca.Cert $v.caBundle)) | toJson -}}
{{- end -}}
{{- end -}}

{{/* Annotations that let cert-manager inject a webhook's CA bundle. */}}
{{- define "linkerd.webhook-ca-annotations" -}}
{{- if .injectCaFrom }}
cert-manager.io/inject-ca-from: {{ .injectCaFrom }}
{{- end }}
{{- if .injectCaFromSecret }}
cert-manager.io/inject-ca-from-secret: {{ .injectCaFromSecret }}
{{- end }}
{{- end -}}
