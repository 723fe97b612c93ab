# passwordless in a container: the executable (PyInstaller's folder build of build.spec), built
# from this source, run as a non-root user with its data in the /data volume.
#
#   docker build -t passwordless .
#   docker run --init -p 3000:3000 -v passwordless-data:/data passwordless
#
# Mount a config at /app/config.toml to tune it; environment variables (CONFIG.md) override it.
# Where pip needs an extra CA bundle to reach the package index, pass it as a build secret:
#   docker build --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt -t passwordless .

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libpython3.11 binutils ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md build.spec ./
COPY requirements requirements
COPY passwordless passwordless
COPY migrations migrations
# Exactly the versions of requirements/build.txt (scripts/lock), nothing resolved at build time:
# two builds of one commit bundle the same packages.
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python3 -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps -r requirements/build.txt \
 && /venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation . \
 && /venv/bin/pip check --disable-pip-version-check \
 && PASSWORDLESS_BUILD=onedir /venv/bin/python -m PyInstaller --noconfirm --clean --log-level WARN build.spec \
 && dist/passwordless/passwordless --version

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin passwordless \
 && mkdir -p /data /app \
 && chown passwordless:passwordless /data \
 && ln -s /data /app/data
# The folder build: nothing to unpack at start, so /tmp may be read-only or noexec.
COPY --from=build /src/dist/passwordless /opt/passwordless
RUN ln -s /opt/passwordless/passwordless /usr/local/bin/passwordless
# ./config.toml is /app/config.toml when mounted; ./data/auth.db is /data/auth.db.
WORKDIR /app
USER passwordless
EXPOSE 3000
VOLUME /data
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["passwordless", "healthcheck"]
# tini as PID 1 forwards docker stop's SIGTERM and reaps children.
ENTRYPOINT ["/usr/bin/tini", "--", "passwordless"]
CMD ["serve"]
