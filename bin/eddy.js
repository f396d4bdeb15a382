#!/usr/bin/env node
import '../dist/pipelines/cli.js';
