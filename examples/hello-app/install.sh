#!/bin/sh
# Runs in the install directory on the agent, with DISTRIB_* variables set.
set -e
echo "installing $DISTRIB_PACKAGE_NAME $DISTRIB_PACKAGE_VERSION into $DISTRIB_INSTALL_DIR"
sha256sum -c checksums.sha256
date -u +%Y-%m-%dT%H:%M:%SZ > installed-at
echo "done"
