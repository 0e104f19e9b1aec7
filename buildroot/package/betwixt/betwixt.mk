################################################################################
#
# betwixt
#
################################################################################

# Built from the checkout this BR2_EXTERNAL tree lives in. For a release,
# point BETWIXT_SITE at the release tarball's URL (without the file name),
# drop BETWIXT_SITE_METHOD and add betwixt.hash (see buildroot/README.md).
BETWIXT_VERSION = 0.1.0
BETWIXT_SITE = $(BR2_EXTERNAL_BETWIXT_PATH)/..
BETWIXT_SITE_METHOD = local
BETWIXT_LICENSE = MIT
BETWIXT_LICENSE_FILES = LICENSE

# Do not copy build products or a Buildroot output dir placed in the checkout.
BETWIXT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude /target --exclude /buildroot/output --exclude /image/rootfs

# Vendoring: Buildroot runs `cargo vendor` only in its download step, and a
# local site (like BETWIXT_OVERRIDE_SRCDIR) skips that step, so the offline
# `cargo build --offline --locked` would find no crates. Either the source
# tree already carries VENDOR/ plus .cargo/config.toml (e.g. a packaging
# branch with vendored crates), or this hook vendors them before the build,
# which needs network access on the build host.
define BETWIXT_CARGO_VENDOR
	if [ ! -d $(@D)/VENDOR ]; then \
		mkdir -p $(@D)/.cargo && cd $(@D) && { \
			$(TARGET_MAKE_ENV) $(PKG_COMMON_CARGO_ENV) \
			cargo vendor --locked VENDOR > .cargo/config.toml \
			|| { rm -rf VENDOR .cargo/config.toml; exit 1; }; }; \
	fi
endef
BETWIXT_PRE_BUILD_HOOKS += BETWIXT_CARGO_VENDOR

# Buildroot sets opt-level, LTO and codegen-units from its own options;
# put back the size profile of Cargo.toml (panic/strip are kept anyway).
BETWIXT_CARGO_ENV = \
	CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
	CARGO_PROFILE_RELEASE_LTO=true \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1

BETWIXT_FEATURES = \
	$(if $(BR2_PACKAGE_BETWIXT_TLS),tls) \
	$(if $(BR2_PACKAGE_BETWIXT_EBPF),ebpf) \
	$(if $(BR2_PACKAGE_BETWIXT_REGEX_UNICODE),regex-unicode)

# The options choose every feature: the crate's defaults (tls, ebpf) are off.
# `cargo install` rebuilds with its own flags: features go to both steps.
BETWIXT_FEATURE_OPTS = --no-default-features
ifneq ($(strip $(BETWIXT_FEATURES)),)
BETWIXT_FEATURE_OPTS += \
	--features $(subst $(space),$(comma),$(strip $(BETWIXT_FEATURES)))
endif
BETWIXT_CARGO_BUILD_OPTS += $(BETWIXT_FEATURE_OPTS)
# --no-track: no /usr/.crates.toml and /usr/.crates2.json in the image.
BETWIXT_CARGO_INSTALL_OPTS += $(BETWIXT_FEATURE_OPTS) --no-track

ifeq ($(BR2_PACKAGE_BETWIXT_EBPF),y)
# build.rs compiles ebpf/lb.bpf.c with the build host's clang; fail rather
# than ship a binary whose fast path reports "not compiled in".
BETWIXT_CARGO_ENV += BETWIXT_EBPF_REQUIRE=1
define BETWIXT_LINUX_CONFIG_FIXUPS
	$(call KCONFIG_ENABLE_OPT,CONFIG_BPF_SYSCALL)
	$(call KCONFIG_ENABLE_OPT,CONFIG_BPF_JIT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_BPF_STREAM_PARSER)
endef
endif

# System user for the systemd unit (the SysV script runs betwixt as root).
define BETWIXT_USERS
	betwixt -1 betwixt -1 * - - - betwixt load balancer
endef

define BETWIXT_INSTALL_CONF
	$(INSTALL) -D -m 0644 $(BETWIXT_PKGDIR)/betwixt.toml \
		$(TARGET_DIR)/etc/betwixt/betwixt.toml
endef
BETWIXT_POST_INSTALL_TARGET_HOOKS += BETWIXT_INSTALL_CONF

define BETWIXT_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(BETWIXT_PKGDIR)/S50betwixt \
		$(TARGET_DIR)/etc/init.d/S50betwixt
endef

define BETWIXT_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(BETWIXT_PKGDIR)/betwixt.service \
		$(TARGET_DIR)/usr/lib/systemd/system/betwixt.service
endef

$(eval $(cargo-package))
